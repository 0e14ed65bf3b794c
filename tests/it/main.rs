//! The binaries as a user runs them, in one test binary (one link of the whole tree instead
//! of one per file): each module is one binary's or one concern's tests.

mod common;
mod ensemble_cli;
mod eval_cli;
mod export_cli;
mod faults;
mod infer_cli;
mod pretrained_cli;
mod serve_cli;
mod shipped_cli;
mod train_cli;
mod wgpu;

//! The binaries as a user runs them, in one test binary (one link of the whole tree instead
//! of one per file): each module is one binary's or one concern's tests.

mod cli;
mod common;
mod eval_cli;
mod faults;
mod pretrained_cli;
mod wgpu;

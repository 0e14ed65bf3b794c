//! The work of each binary that runs on a backend: training, captioning pictures, scoring a
//! run on a split, writing feature grids and serving captions.
//!
//! Each job is written once, generic over Burn's backend, and each module's `run` is the one
//! non-generic entry point to it: the job is compiled here, in this library, once for every
//! backend built in, and the binaries (which parse their flags, build a job and print what it
//! returns) link it instead of compiling the model, the trainer and Burn's generic code again
//! each. docs/development.md has the build times this saves.

pub mod eval;
pub mod export;
pub mod features;
pub mod infer;
pub mod serve;
pub mod train;

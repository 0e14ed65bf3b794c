//! Training and evaluation of the captioner through `burn-train`: data batching, the run folder
//! layout, the `Learner` set-up with checkpoints and resume, a plain-text progress renderer,
//! corpus BLEU, and the end-of-run report.

pub mod batcher;
pub mod coco_files;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod feature_cache;
pub mod guard;
pub mod interrupt;
pub mod loader;
pub mod metrics;
pub mod optimizer;
pub mod renderer;
pub mod run_dir;
pub mod schedule;
pub mod self_critical;
pub mod train;
pub mod validation;

pub use batcher::{CaptionBatcher, FixedBatch};
pub use config::TrainConfig;
pub use evaluate::EvalReport;
pub use run_dir::{LoadedRun, RunDir};
pub use train::train;

// The behaviour tests (`tests/it/`, the trainer and the model from outside) are compiled into
// the unit tests' binary rather than a binary of their own: a release build compiles the model,
// the trainer and Burn's generic code again for every test binary that names a backend. They
// use the crate by its name, as a user's code would.
#[cfg(test)]
extern crate self as captioner_training;
#[cfg(test)]
#[path = "../tests/it/main.rs"]
mod it;

//! The training crate's behaviour from outside, through its public API only. Compiled into the
//! unit tests' binary (`src/lib.rs`), so that the model and the trainer are compiled once for
//! the tests' backend.

mod coco_metrics;
mod feature_cache;
mod fine_tune;
mod fixed_shapes;
mod model_behaviour;

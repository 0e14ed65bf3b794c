//! The training crate's behaviour from outside, in one test binary (the model and the trainer
//! compiled once for the tests' backend, not once per file).

mod coco_metrics;
mod feature_cache;
mod fine_tune;
mod fixed_shapes;
mod model_behaviour;

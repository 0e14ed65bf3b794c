//! Training a captioner on the backend chosen (the `train` binary's job).

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use burn::train::Interrupter;
use captioner_model::Shapes;
use captioner_training::run_dir::{ResumePoint, RunDir};
use captioner_training::train::{train, TrainReport};
use captioner_training::TrainConfig;

use crate::device::{run_on, BackendJob, Chosen, Target};

/// A run to train: its resolved settings, its folder and where it resumes from.
pub struct TrainJob {
    /// The run's settings, as its `config.json` holds them.
    pub config: TrainConfig,
    /// The run folder: checkpoints, vocabulary, final model and report.
    pub run: RunDir,
    /// The checkpoint to continue from; `None` starts the run.
    pub resume_from: Option<ResumePoint>,
    /// Asks the run to stop (Ctrl-C, or the dashboard's `q`).
    pub interrupter: Interrupter,
}

impl BackendJob for TrainJob {
    type Output = TrainReport;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<TrainReport> {
        train::<B>(
            target.devices,
            self.config,
            &self.run,
            self.resume_from,
            target.shapes,
            self.interrupter,
        )
    }
}

/// Trains `job` on the backend `chosen`, on its devices `indices` (data-parallel when more
/// than one), shaping its tensors as `shapes` says or, when `None`, as the backend wants.
#[inline(never)]
pub fn run(
    chosen: &Chosen,
    indices: &[usize],
    shapes: Option<Shapes>,
    job: TrainJob,
) -> Result<TrainReport> {
    run_on(chosen, indices, shapes, job)
}

//! Stopping a run when its user asks (Ctrl-C, the dashboard's `q`) without losing the epoch
//! in progress.
//!
//! burn-train 0.21 checkpoints only at the end of an epoch, and its interrupter stops the
//! training loop after the step it is in, before validation: the part of the epoch trained
//! was lost, and a stop during validation scored the epoch on the captions made so far. Here
//! the user's request is a flag of its own, read at two places:
//! - [`Interruptible`] wraps the optimiser. After the step in which it sees the request, it
//!   writes that step's checkpoint ([`RunDir::save_step_checkpoint`]: model, optimiser and
//!   schedule, then the state file) and only then stops burn-train's loop. `--resume` goes on
//!   from that step: the loader leaves out the batches trained
//!   ([`crate::loader::OrderedLoader::skipping`]) and seeds the backend per batch, so the run
//!   ends as an unbroken one would.
//! - At an epoch's last step, during validation, or with several devices (whose shares of an
//!   epoch burn-train hands out itself), the epoch is finished instead: validated and
//!   checkpointed, then [`crate::validation::PlateauStop`] ends the run.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use burn::module::Module;
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::Interrupter;
use captioner_model::weights_file::recorder_message;
use captioner_model::{Captioner, WeightsRecorder};

use crate::run_dir::{RunDir, StepCheckpoint};
use crate::schedule::PlateauDecay;

/// What became of the user's request to stop mid-epoch: the step checkpoint written, or why
/// it could not be. Shared between the optimiser inside burn-train's learner and the caller.
pub type StepSaved = Arc<Mutex<Option<Result<StepCheckpoint, String>>>>;

/// When and where a run checkpoints the step in which its user asked it to stop.
#[derive(Clone)]
pub struct StepCheckpointing {
    /// Set by the user (Ctrl-C, the dashboard's `q`).
    pub request: Interrupter,
    /// burn-train's own: stops its loop after the current step.
    pub stop: Interrupter,
    /// The run the checkpoint goes into.
    pub run: RunDir,
    /// A clone of the learner's schedule, sharing its position.
    pub schedule: PlateauDecay,
    /// Optimiser steps in an epoch.
    pub steps_per_epoch: usize,
    /// Whether a step checkpoint can be resumed from (one device only); otherwise the epoch
    /// is finished instead.
    pub mid_epoch: bool,
}

/// An optimiser that, once the user asks the run to stop, checkpoints the step it has just
/// taken and then stops burn-train's training loop (see the module's documentation).
#[derive(Clone)]
pub struct Interruptible<O> {
    inner: O,
    at: StepCheckpointing,
    /// Optimiser steps of the run so far, those before a resume included.
    steps: usize,
    saved: StepSaved,
}

impl<O> Interruptible<O> {
    /// `inner`, checkpointing as `at` says, in a run that has taken `steps_done` steps.
    pub fn new(inner: O, at: StepCheckpointing, steps_done: usize) -> Self {
        Self {
            inner,
            at: StepCheckpointing {
                steps_per_epoch: at.steps_per_epoch.max(1),
                ..at
            },
            steps: steps_done,
            saved: StepSaved::default(),
        }
    }

    /// Where the outcome of a step checkpoint is recorded.
    pub fn saved(&self) -> StepSaved {
        self.saved.clone()
    }

    /// The epoch (1-based) and its steps done after `steps` steps of the run.
    fn position(&self, steps: usize) -> (usize, usize) {
        let per_epoch = self.at.steps_per_epoch;
        let epoch = (steps - 1) / per_epoch + 1;
        (epoch, steps - (epoch - 1) * per_epoch)
    }
}

impl<O> Interruptible<O> {
    fn after_step<B>(&mut self, model: &Captioner<B>)
    where
        B: AutodiffBackend,
        O: Optimizer<Captioner<B>, B>,
    {
        self.steps += 1;
        // Not asked, or already stopping (a NaN loss stops the loop too: nothing is saved).
        if !self.at.request.should_stop() || self.at.stop.should_stop() {
            return;
        }
        let (epoch, steps) = self.position(self.steps);
        if !self.at.mid_epoch || steps == self.at.steps_per_epoch {
            return;
        }
        let state = StepCheckpoint {
            epoch,
            steps,
            steps_per_epoch: self.at.steps_per_epoch,
        };
        let outcome = self
            .at
            .run
            .save_step_checkpoint(state, |dir| self.save(dir, model))
            .map(|()| state)
            .map_err(|e| format!("{e:#}"));
        *self.saved.lock().expect("step checkpoint lock") = Some(outcome);
        self.at.stop.stop(self.at.request.get_message().as_deref());
    }

    /// The model, optimiser and schedule files of the step checkpoint, in `dir`, as
    /// burn-train's checkpointer writes an epoch's.
    fn save<B>(&self, dir: &Path, model: &Captioner<B>) -> anyhow::Result<()>
    where
        B: AutodiffBackend,
        O: Optimizer<Captioner<B>, B>,
    {
        let recorder = WeightsRecorder::new();
        let fail = |e| anyhow::anyhow!(recorder_message(e));
        model
            .clone()
            .save_file(dir.join("model"), &recorder)
            .map_err(fail)
            .context("model")?;
        Recorder::<B>::record(&recorder, self.inner.to_record(), dir.join("optim"))
            .map_err(fail)
            .context("optimiser")?;
        Recorder::<B>::record(
            &recorder,
            self.at.schedule.snapshot(),
            dir.join("scheduler"),
        )
        .map_err(fail)
        .context("schedule")?;
        Ok(())
    }
}

impl<B: AutodiffBackend, O: Optimizer<Captioner<B>, B>> Optimizer<Captioner<B>, B>
    for Interruptible<O>
{
    type Record = O::Record;

    fn step(
        &mut self,
        lr: LearningRate,
        module: Captioner<B>,
        grads: GradientsParams,
    ) -> Captioner<B> {
        let module = self.inner.step(lr, module, grads);
        self.after_step(&module);
        module
    }

    fn step_multi(
        &mut self,
        lr: LearningRate,
        module: Captioner<B>,
        grads: MultiGradientsParams,
    ) -> Captioner<B> {
        let module = self.inner.step_multi(lr, module, grads);
        self.after_step(&module);
        module
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            inner: self.inner.load_record(record),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_the_run_map_to_the_epoch_and_its_steps_done() {
        let run = RunDir::new("unused");
        let history = crate::validation::ValidationHistory::new(Default::default());
        let schedule = PlateauDecay::new(
            crate::schedule::BaseSchedule::new(crate::config::LrSchedule::Constant, 1e-3, 1)
                .unwrap(),
            history,
        );
        let at = StepCheckpointing {
            request: Interrupter::new(),
            stop: Interrupter::new(),
            run,
            schedule,
            steps_per_epoch: 10,
            mid_epoch: true,
        };
        let at = Interruptible::new((), at, 0);
        assert_eq!(at.position(1), (1, 1));
        assert_eq!(at.position(10), (1, 10));
        assert_eq!(at.position(11), (2, 1));
        assert_eq!(at.position(25), (3, 5));
    }
}

//! The learning-rate schedule: cosine or constant, multiplied by the plateau decays of the
//! validation score.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use burn::lr_scheduler::constant::ConstantLr;
use burn::lr_scheduler::cosine::{CosineAnnealingLrScheduler, CosineAnnealingLrSchedulerConfig};
use burn::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::prelude::Backend;

use crate::config::LrSchedule;
use crate::validation::ValidationHistory;

/// The schedule before plateau decays.
#[derive(Clone)]
pub enum BaseSchedule {
    /// Cosine from `lr` to `lr / 20` over the run.
    Cosine(CosineAnnealingLrScheduler),
    /// `lr` throughout.
    Constant(ConstantLr),
}

impl BaseSchedule {
    /// `schedule` starting at `lr`, over `steps` optimiser steps.
    pub fn new(schedule: LrSchedule, lr: f64, steps: usize) -> Result<Self, String> {
        Ok(match schedule {
            LrSchedule::Cosine => Self::Cosine(
                CosineAnnealingLrSchedulerConfig::new(lr, steps.max(1))
                    .with_min_lr(lr / 20.0)
                    .init()
                    .map_err(|e| format!("learning rate {lr}: {e}"))?,
            ),
            LrSchedule::Constant => Self::Constant(ConstantLr::from(lr)),
        })
    }
}

impl LrScheduler for BaseSchedule {
    /// The cosine's step count (0 for the constant rate).
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        match self {
            Self::Cosine(s) => s.step(),
            Self::Constant(s) => LrScheduler::step(s),
        }
    }

    fn to_record<B: Backend>(&self) -> usize {
        match self {
            Self::Cosine(s) => s.to_record::<B>(),
            Self::Constant(_) => 0,
        }
    }

    fn load_record<B: Backend>(self, record: usize) -> Self {
        match self {
            Self::Cosine(s) => Self::Cosine(s.load_record::<B>(record)),
            constant => constant,
        }
    }
}

/// A learning-rate schedule multiplied by the plateau decays of the validation history
/// (`lr_decay_factor` after every `lr_decay_patience` epochs without a better score). Its
/// checkpoint holds the history too, so that a resumed run goes on from the same state.
///
/// Clones share the position and the history: burn-train's learner owns the one that steps,
/// and a clone kept outside writes the schedule of a mid-epoch checkpoint ([`Self::snapshot`]).
#[derive(Clone)]
pub struct PlateauDecay {
    inner: BaseSchedule,
    history: ValidationHistory,
    /// The base schedule's record after its last step.
    position: Arc<AtomicUsize>,
}

impl PlateauDecay {
    /// `inner` decayed on the plateaus of `history`.
    pub fn new(inner: BaseSchedule, history: ValidationHistory) -> Self {
        let position = Arc::new(AtomicUsize::new(base_record(&inner)));
        Self {
            inner,
            history,
            position,
        }
    }

    /// The record the learner's schedule would save now (read from any clone).
    pub fn snapshot(&self) -> (usize, String) {
        (self.position.load(Ordering::SeqCst), self.history.to_json())
    }
}

/// The base schedule's record, which is the same on every backend.
fn base_record(schedule: &BaseSchedule) -> usize {
    LrScheduler::to_record::<burn::backend::NdArray>(schedule)
}

impl LrScheduler for PlateauDecay {
    type Record<B: Backend> = (usize, String);

    fn step(&mut self) -> LearningRate {
        let lr = self.inner.step() * self.history.lr_factor();
        self.position
            .store(base_record(&self.inner), Ordering::SeqCst);
        lr
    }

    fn to_record<B: Backend>(&self) -> Self::Record<B> {
        (self.inner.to_record::<B>(), self.history.to_json())
    }

    fn load_record<B: Backend>(self, (inner, history): Self::Record<B>) -> Self {
        self.history.restore(&history);
        let inner = self.inner.load_record::<B>(inner);
        self.position.store(base_record(&inner), Ordering::SeqCst);
        Self { inner, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ValidationConfig;
    use crate::metrics::CocoScores;
    use crate::validation::EpochScores;

    fn history(values: &[f64]) -> ValidationHistory {
        let h = ValidationHistory::new(ValidationConfig {
            lr_decay_patience: 2,
            ..ValidationConfig::default()
        });
        for (i, v) in values.iter().enumerate() {
            let scores = CocoScores {
                bleu: [0.5, 0.4, 0.3, *v],
                rouge_l: 0.4,
                cider: 1.0,
            };
            h.record(
                i + 1,
                Some(EpochScores {
                    epoch: i + 1,
                    images: 1,
                    scores,
                }),
            );
        }
        h
    }

    #[test]
    fn history_and_cosine_step_survive_the_scheduler_checkpoint() {
        type B = burn::backend::NdArray;
        let h = history(&[0.5, 0.4, 0.3]);
        let mut decay = PlateauDecay::new(
            BaseSchedule::new(LrSchedule::Cosine, 1e-3, 10).unwrap(),
            h.clone(),
        );
        let watcher = decay.clone();
        for _ in 0..4 {
            decay.step();
        }
        let record = decay.to_record::<B>();
        assert_eq!(
            watcher.snapshot(),
            record,
            "a clone made before sees the steps taken"
        );
        let fresh = ValidationHistory::new(ValidationConfig {
            lr_decay_patience: 2,
            ..ValidationConfig::default()
        });
        let base = BaseSchedule::new(LrSchedule::Cosine, 1e-3, 10).unwrap();
        let mut resumed = PlateauDecay::new(base, fresh.clone()).load_record::<B>(record);
        assert_eq!(fresh.epochs(), h.epochs());
        assert!((resumed.step() - decay.step()).abs() < 1e-15);
    }

    #[test]
    fn constant_schedule_only_moves_on_plateaus() {
        let h = history(&[0.5, 0.4, 0.3]);
        let mut decay = PlateauDecay::new(
            BaseSchedule::new(LrSchedule::Constant, 1e-3, 10).unwrap(),
            h,
        );
        assert!((decay.step() - 1e-3 * 0.8).abs() < 1e-15);
        assert!((decay.step() - 1e-3 * 0.8).abs() < 1e-15);
    }
}

//! The layout of a run folder: what training writes, and what `--resume` and `eval` read back
//! (`infer` reads the model's files alone: [`captioner_model::inference`]).
//!
//! ```text
//! <run>/config.json      the training settings (TrainConfig)
//! <run>/model.json       the model's shape (CaptionerConfig)
//! <run>/vocab.json       the vocabulary
//! <run>/model.mpk        the final weights
//! <run>/checkpoint/      burn-train's per-epoch model/optimiser/scheduler checkpoints
//! <run>/checkpoint/step/ the checkpoint of a run stopped mid-epoch (its state.json last)
//! <run>/report.json      held-out scores of the final model
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use captioner_datasets::files::write_file;
use captioner_model::weights_file::check_complete;
use captioner_model::{Captioning, ModelFiles};

use crate::config::TrainConfig;

pub use captioner_model::WeightsRecorder;

/// The files of one epoch's checkpoint, as burn-train names them: `<part>-<epoch>.mpk`.
pub const CHECKPOINT_PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// What is wrong with each file of a checkpoint whose part files `file` names (without
/// extension): nothing when all of them are there and decode to the end.
fn part_faults(file: impl Fn(&str) -> PathBuf) -> Vec<String> {
    CHECKPOINT_PARTS
        .iter()
        .filter_map(|part| check_complete(&file(part)).err().map(|e| e.0))
        .collect()
}

/// Where a run stopped in the middle of an epoch: `checkpoint/step/state.json`, written after
/// the step's model, optimiser and scheduler files (`checkpoint/step/<part>.mpk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepCheckpoint {
    /// The epoch it stopped in (1-based).
    pub epoch: usize,
    /// Optimiser steps of that epoch done.
    pub steps: usize,
    /// Optimiser steps in a whole epoch.
    pub steps_per_epoch: usize,
}

/// Where a resumed run goes on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Epochs completed, from whose last checkpoint the run goes on.
    pub epochs: usize,
    /// Or, stopped mid-epoch after `epochs`, its step checkpoint.
    pub step: Option<StepCheckpoint>,
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

/// A trained run loaded from its folder: its model, ready to caption, and the settings it
/// was trained with (which `eval` reads its data from).
#[derive(Debug)]
pub struct LoadedRun<B: Backend> {
    /// The model, its vocabulary and its picture preparation.
    pub captioning: Captioning<B>,
    /// The settings it was trained with.
    pub train_config: TrainConfig,
}

impl RunDir {
    /// The run folder at `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A new folder under `parent` named after `prefix` and the current UTC time.
    pub fn timestamped(parent: &Path, prefix: &str) -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + (month <= 2) as i64;
        let name = format!(
            "{prefix}-{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        Self::new(parent.join(name))
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The files captioning reads (`model.json`, `vocab.json`, `model.mpk`).
    pub fn model_files(&self) -> ModelFiles {
        ModelFiles::new(&self.root)
    }
    /// `config.json`.
    pub fn train_config(&self) -> PathBuf {
        self.model_files().train_config()
    }
    /// `model.json`.
    pub fn model_config(&self) -> PathBuf {
        self.model_files().model_config()
    }
    /// `vocab.json`.
    pub fn vocab(&self) -> PathBuf {
        self.model_files().vocab()
    }
    /// `model.mpk` (the recorder adds the extension; this is the path without it).
    pub fn weights(&self) -> PathBuf {
        self.model_files().weights()
    }
    /// `checkpoint/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    /// `report.json`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }
    /// `checkpoint/step/`: the checkpoint of a run stopped mid-epoch.
    pub fn step_checkpoints(&self) -> PathBuf {
        self.checkpoints().join("step")
    }
    /// `checkpoint/step/state.json`.
    fn step_state(&self) -> PathBuf {
        self.step_checkpoints().join("state.json")
    }

    /// Writes the checkpoint of a run stopped mid-epoch: `save` writes the model, optimiser
    /// and scheduler files into the folder it is given, then `state` is written, last, so
    /// that the checkpoint is complete exactly when its state file is there.
    pub fn save_step_checkpoint(
        &self,
        state: StepCheckpoint,
        save: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        self.drop_step_checkpoint()?;
        let dir = self.step_checkpoints();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        save(&dir)?;
        write_file(
            &self.step_state(),
            serde_json::to_string(&state)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", self.step_state().display()))
    }

    /// Removes the mid-epoch checkpoint: its state file first, so that a process killed
    /// half-way leaves no checkpoint that looks complete.
    pub fn drop_step_checkpoint(&self) -> Result<()> {
        let gone = |path: &Path, result: std::io::Result<()>| match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
        gone(&self.step_state(), std::fs::remove_file(self.step_state()))?;
        let dir = self.step_checkpoints();
        gone(&dir, std::fs::remove_dir_all(&dir))
    }

    /// Where `--resume` goes on from: the last complete epoch checkpoint, or the step
    /// checkpoint of the epoch after it when the run stopped in it; with a sentence for each
    /// checkpoint that is unusable (skipped).
    pub fn resume_point(&self) -> (Option<ResumePoint>, Vec<String>) {
        let (last, mut broken) = self.last_checkpoint();
        let epochs = last.unwrap_or(0);
        let step = std::fs::read_to_string(self.step_state())
            .ok()
            .and_then(|text| serde_json::from_str::<StepCheckpoint>(&text).ok())
            // Older than the last epoch checkpoint: that epoch was finished since.
            .filter(|state| state.epoch == epochs + 1)
            .filter(|state| {
                let faults = part_faults(|part| self.step_checkpoints().join(part));
                if !faults.is_empty() {
                    broken.push(format!(
                        "the checkpoint of epoch {}, step {} is unusable: {}",
                        state.epoch,
                        state.steps,
                        faults.join("; ")
                    ));
                }
                faults.is_empty()
            });
        match (last, step) {
            (None, None) => (None, broken),
            _ => (Some(ResumePoint { epochs, step }), broken),
        }
    }

    /// The epochs with a checkpoint file of each part (model, optimiser, scheduler), newest
    /// first, whether or not the files are whole.
    pub fn checkpoint_epochs(&self) -> Vec<usize> {
        let dir = self.checkpoints();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut epochs: Vec<usize> = entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("model-")?
                    .strip_suffix(".mpk")?
                    .parse::<usize>()
                    .ok()
            })
            .filter(|e| {
                CHECKPOINT_PARTS
                    .iter()
                    .all(|p| dir.join(format!("{p}-{e}.mpk")).exists())
            })
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        epochs
    }

    /// The last epoch whose checkpoint is complete (its model, optimiser and scheduler files
    /// all present and decoding to the end), if any, with a sentence for each newer one that
    /// is not (a run killed while writing it, a disk that failed): resuming skips those.
    pub fn last_checkpoint(&self) -> (Option<usize>, Vec<String>) {
        let dir = self.checkpoints();
        let mut broken = Vec::new();
        for epoch in self.checkpoint_epochs() {
            let faults = part_faults(|part| dir.join(format!("{part}-{epoch}")));
            if faults.is_empty() {
                return (Some(epoch), broken);
            }
            broken.push(format!(
                "the checkpoint of epoch {epoch} is unusable: {}",
                faults.join("; ")
            ));
        }
        (None, broken)
    }

    /// Whether the folder holds a run that never completed an epoch: its settings, but no
    /// checkpoint and no final model (a run that failed or was stopped before its first
    /// checkpoint). Such a folder can be started again from scratch.
    pub fn never_checkpointed(&self) -> bool {
        self.train_config().exists()
            && self.checkpoint_epochs().is_empty()
            && !self.step_state().exists()
            && !self.weights().with_extension("mpk").exists()
    }

    /// Reads the training settings.
    pub fn load_train_config(&self) -> Result<TrainConfig> {
        let path = self.train_config();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        TrainConfig::from_json(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a training config: {e}", path.display()))
    }

    /// Writes the training settings.
    pub fn save_train_config(&self, config: &TrainConfig) -> Result<()> {
        let path = self.train_config();
        write_file(&path, serde_json::to_string_pretty(config)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Loads the final model, its vocabulary and settings onto `device`.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<LoadedRun<B>> {
        Ok(LoadedRun {
            captioning: Captioning::load(&self.model_files(), device)?,
            train_config: self.load_train_config()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::record::Recorder;

    fn run_dir(name: &str) -> RunDir {
        let root =
            std::env::temp_dir().join(format!("captioner-run-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("checkpoint")).unwrap();
        RunDir::new(root)
    }

    /// Writes a whole checkpoint file at `path` (without its extension).
    fn part(path: PathBuf) {
        Recorder::<NdArray>::record(&WeightsRecorder::new(), 7usize, path).unwrap();
    }

    fn epoch(run: &RunDir, epoch: usize) {
        for p in CHECKPOINT_PARTS {
            part(run.checkpoints().join(format!("{p}-{epoch}")));
        }
    }

    fn step(run: &RunDir, epoch: usize, steps: usize) -> StepCheckpoint {
        let state = StepCheckpoint {
            epoch,
            steps,
            steps_per_epoch: 10,
        };
        run.save_step_checkpoint(state, |dir| {
            for p in CHECKPOINT_PARTS {
                part(dir.join(p));
            }
            Ok(())
        })
        .unwrap();
        state
    }

    #[test]
    fn a_run_stopped_mid_epoch_resumes_from_its_step_checkpoint_until_that_epoch_is_done() {
        let run = run_dir("step");
        let state = step(&run, 1, 4);
        std::fs::write(run.train_config(), "{}").unwrap();
        assert!(
            !run.never_checkpointed(),
            "a run stopped at a step is not started over"
        );
        let point = ResumePoint {
            epochs: 0,
            step: Some(state),
        };
        assert_eq!(run.resume_point(), (Some(point), vec![]));
        // Epoch 1 finished since: the step checkpoint is stale.
        epoch(&run, 1);
        let point = ResumePoint {
            epochs: 1,
            step: None,
        };
        assert_eq!(run.resume_point(), (Some(point), vec![]));
        // Stopped again, in epoch 2.
        let state = step(&run, 2, 9);
        assert_eq!(run.resume_point().0.unwrap().step, Some(state));
        run.drop_step_checkpoint().unwrap();
        assert_eq!(run.resume_point().0.unwrap().step, None);
        std::fs::remove_dir_all(run.root()).ok();
    }

    #[test]
    fn a_step_checkpoint_with_a_truncated_file_is_skipped_with_a_warning() {
        let run = run_dir("truncated-step");
        epoch(&run, 1);
        step(&run, 2, 3);
        let optim = run.step_checkpoints().join("optim.mpk");
        let bytes = std::fs::read(&optim).unwrap();
        std::fs::write(&optim, &bytes[..bytes.len() - 1]).unwrap();
        let (point, broken) = run.resume_point();
        assert_eq!(
            point,
            Some(ResumePoint {
                epochs: 1,
                step: None
            })
        );
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].contains("epoch 2, step 3"), "{broken:?}");
        assert!(broken[0].contains("optim.mpk is truncated"), "{broken:?}");
        std::fs::remove_dir_all(run.root()).ok();
    }
}

//! The layout of a run folder: what training writes, and what `--resume` and `eval` read back
//! (`infer` reads the model's files alone: [`captioner_model::inference`]).
//!
//! ```text
//! <run>/config.json      the training settings (TrainConfig)
//! <run>/model.json       the model's shape (CaptionerConfig)
//! <run>/vocab.json       the vocabulary
//! <run>/model.mpk        the final weights
//! <run>/checkpoint/      burn-train's per-epoch model/optimiser/scheduler checkpoints
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
const CHECKPOINT_PARTS: [&str; 3] = ["model", "optim", "scheduler"];

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
            let faults: Vec<String> = CHECKPOINT_PARTS
                .iter()
                .filter_map(|p| check_complete(&dir.join(format!("{p}-{epoch}"))).err())
                .collect();
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

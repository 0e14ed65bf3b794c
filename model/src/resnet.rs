//! torchvision's ResNet-18/34/50/101/152 (He et al. 2016, "v1.5": the stride of a bottleneck
//! sits on its 3x3 convolution) as a feature-grid encoder: the classifier head is gone and the
//! last stage's map is average-pooled to a `grid x grid` attention grid.
//!
//! Field names follow torchvision's (`conv1`, `bn1`, `layer1.0.conv2`, ...), so its `.pth`
//! files load with one renaming: `downsample.0/1` become `downsample.conv/bn`.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;

use crate::backbone::{Backbone, BackboneConfig};
use crate::conv_bn::{conv_bn_forward, ConvBn, ConvShape};
use crate::frozen_batch_norm::FrozenBatchNorm2d;

const BN_EPS: f64 = 1e-5;

/// Shape of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// Side of the square input images.
    #[config(default = 224)]
    pub image_size: usize,
    /// Side of the attention grid that the last stage's map is pooled to.
    #[config(default = 14)]
    pub grid: usize,
    /// Channels of the stem (64 in torchvision; the stages have 1, 2, 4 and 8 times as many,
    /// times 4 for bottleneck blocks). Only the test fixtures use other widths.
    #[config(default = 64)]
    pub width: usize,
}

impl BackboneConfig for ResNetConfig {
    fn image_size(&self) -> usize {
        self.image_size
    }

    /// 512 for ResNet-18/34, 2048 for the others.
    fn feature_dim(&self) -> usize {
        let (_, bottleneck) = self.layout();
        self.width * 8 * if bottleneck { 4 } else { 1 }
    }

    fn grid_positions(&self) -> usize {
        self.grid * self.grid
    }
}

/// Two 3x3 convolutions (ResNet-18 and -34).
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    conv1: Conv2d<B>,
    bn1: FrozenBatchNorm2d<B>,
    conv2: Conv2d<B>,
    bn2: FrozenBatchNorm2d<B>,
    downsample: Option<ConvBn<B>>,
}

/// 1x1, 3x3, 1x1 convolutions (ResNet-50, -101 and -152).
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    conv1: Conv2d<B>,
    bn1: FrozenBatchNorm2d<B>,
    conv2: Conv2d<B>,
    bn2: FrozenBatchNorm2d<B>,
    conv3: Conv2d<B>,
    bn3: FrozenBatchNorm2d<B>,
    downsample: Option<ConvBn<B>>,
}

/// One residual block of either kind.
// Burn's `Module` cannot be derived through a `Box`; a network's blocks are all of one kind.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block<B: Backend> {
    /// ResNet-18/34 block.
    Basic(BasicBlock<B>),
    /// ResNet-50/101/152 block.
    Bottleneck(Bottleneck<B>),
}

/// A ResNet without its classifier, giving `[batch, grid*grid, channels]` features.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    conv1: Conv2d<B>,
    bn1: FrozenBatchNorm2d<B>,
    layer1: Vec<Block<B>>,
    layer2: Vec<Block<B>>,
    layer3: Vec<Block<B>>,
    layer4: Vec<Block<B>>,
    grid: usize,
}

impl ResNetConfig {
    /// The depths torchvision publishes weights for.
    pub const DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

    /// Blocks per stage, and whether they are bottlenecks.
    fn layout(&self) -> ([usize; 4], bool) {
        match self.depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            101 => ([3, 4, 23, 3], true),
            152 => ([3, 8, 36, 3], true),
            d => panic!("no ResNet-{d}: the depths are 18, 34, 50, 101 and 152"),
        }
    }

    /// Builds the network with random weights and identity batch statistics.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let (blocks, bottleneck) = self.layout();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_channels = self.width;
        let mut stages = Vec::with_capacity(4);
        for (stage, &count) in blocks.iter().enumerate() {
            let planes = self.width << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let mut layer = Vec::with_capacity(count);
            for i in 0..count {
                let stride = if i == 0 { stride } else { 1 };
                let out_channels = planes * expansion;
                let downsample = (stride != 1 || in_channels != out_channels).then(|| {
                    ConvBn::new(
                        ConvShape::square([in_channels, out_channels], 1, stride, 0),
                        BN_EPS,
                        device,
                    )
                });
                layer.push(if bottleneck {
                    Block::Bottleneck(Bottleneck {
                        conv1: ConvShape::square([in_channels, planes], 1, 1, 0).init(device),
                        bn1: FrozenBatchNorm2d::new(planes, BN_EPS, device),
                        conv2: ConvShape::square([planes, planes], 3, stride, 1).init(device),
                        bn2: FrozenBatchNorm2d::new(planes, BN_EPS, device),
                        conv3: ConvShape::square([planes, out_channels], 1, 1, 0).init(device),
                        bn3: FrozenBatchNorm2d::new(out_channels, BN_EPS, device),
                        downsample,
                    })
                } else {
                    Block::Basic(BasicBlock {
                        conv1: ConvShape::square([in_channels, planes], 3, stride, 1).init(device),
                        bn1: FrozenBatchNorm2d::new(planes, BN_EPS, device),
                        conv2: ConvShape::square([planes, planes], 3, 1, 1).init(device),
                        bn2: FrozenBatchNorm2d::new(planes, BN_EPS, device),
                        downsample,
                    })
                });
                in_channels = out_channels;
            }
            stages.push(layer);
        }
        let [layer1, layer2, layer3, layer4] = stages.try_into().expect("four stages");
        ResNet {
            conv1: ConvShape::square([3, self.width], 7, 2, 3).init(device),
            bn1: FrozenBatchNorm2d::new(self.width, BN_EPS, device),
            layer1,
            layer2,
            layer3,
            layer4,
            grid: self.grid,
        }
    }
}

impl<B: Backend> Block<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (out, downsample) = match self {
            Block::Basic(b) => {
                let out = relu(conv_bn_forward(&b.conv1, &b.bn1, x.clone()));
                (conv_bn_forward(&b.conv2, &b.bn2, out), &b.downsample)
            }
            Block::Bottleneck(b) => {
                let out = relu(conv_bn_forward(&b.conv1, &b.bn1, x.clone()));
                let out = relu(conv_bn_forward(&b.conv2, &b.bn2, out));
                (conv_bn_forward(&b.conv3, &b.bn3, out), &b.downsample)
            }
        };
        let identity = match downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(out + identity)
    }
}

impl<B: Backend> Backbone<B> for ResNet<B> {
    /// How torchvision's `.pth` keys map onto this module's names.
    const KEY_REMAPS: &'static [(&'static str, &'static str)] = &[
        (r"\.downsample\.0\.", ".downsample.conv."),
        (r"\.downsample\.1\.", ".downsample.bn."),
    ];

    /// The last stage's map, `[batch, channels, size/32, size/32]`, before pooling.
    fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = relu(conv_bn_forward(&self.conv1, &self.bn1, images));
        let mut x = max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
        }
        x
    }

    fn grid(&self) -> usize {
        self.grid
    }

    /// Stops gradients into the stem and the first stage, so that fine-tuning trains
    /// `layer2`..`layer4` only (the usual recipe).
    fn freeze_early_layers(self) -> Self {
        Self {
            conv1: self.conv1.no_grad(),
            bn1: self.bn1.no_grad(),
            layer1: self.layer1.no_grad(),
            ..self
        }
    }
}

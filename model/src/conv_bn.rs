//! A convolution without bias followed by frozen batch normalisation: the unit that the
//! torchvision CNNs are built from.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;

use crate::frozen_batch_norm::FrozenBatchNorm2d;

/// Shape of one convolution: `kernel` and `padding` are `[height, width]`.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: [usize; 2],
}

impl ConvShape {
    /// A square `k x k` convolution.
    pub fn square(channels: [usize; 2], k: usize, stride: usize, padding: usize) -> Self {
        Self {
            channels,
            kernel: [k, k],
            stride,
            padding: [padding, padding],
        }
    }

    /// The convolution, bias-free, initialised as torchvision does (Kaiming normal, fan out).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Conv2d<B> {
        let [ph, pw] = self.padding;
        Conv2dConfig::new(self.channels, self.kernel)
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
            .with_bias(false)
            .with_initializer(Initializer::KaimingNormal {
                gain: std::f64::consts::SQRT_2,
                fan_out_only: true,
            })
            .init(device)
    }
}

/// Convolution then batch normalisation (torchvision's `downsample` pairs and Inception's
/// `BasicConv2d`, whose fields are named `conv` and `bn`).
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    /// The convolution.
    pub conv: Conv2d<B>,
    /// Its normalisation.
    pub bn: FrozenBatchNorm2d<B>,
}

impl<B: Backend> ConvBn<B> {
    /// Builds the pair with identity normalisation of epsilon `eps`.
    pub fn new(shape: ConvShape, eps: f64, device: &B::Device) -> Self {
        Self {
            conv: shape.init(device),
            bn: FrozenBatchNorm2d::new(shape.channels[1], eps, device),
        }
    }

    /// Convolution and normalisation, no activation.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.bn.forward(self.conv.forward(x))
    }
}

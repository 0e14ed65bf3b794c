//! torchvision's Inception v3 (Szegedy et al. 2016) as a feature-grid encoder: everything up to
//! `Mixed_7c` (2048 channels, 8x8 at 299x299), then average pooling to the attention grid.
//!
//! Module names are torchvision's in snake case (`Conv2d_1a_3x3` is `conv2d_1a_3x3`), with the
//! repeated blocks of a stage in a list (`Mixed_5b`..`5d` are `mixed_5.0`..`2`, `Mixed_6b`..`6e`
//! are `mixed_6.0`..`3`, `Mixed_7b`, `7c` are `mixed_7.0`, `1`): a list keeps the weights'
//! record off the stack when a checkpoint is read. [`InceptionV3::KEY_REMAPS`] maps the `.pth`
//! keys onto these names.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};

use crate::backbone::{Backbone, BackboneConfig};
use crate::conv_bn::{ConvBn, ConvShape};
use crate::imagenet::renormalise;

const BN_EPS: f64 = 1e-3;

/// Shape of an [`InceptionV3`].
#[derive(Config, Debug)]
pub struct InceptionV3Config {
    /// Side of the square input images (299 for the published weights; at least 75).
    #[config(default = 299)]
    pub image_size: usize,
    /// Side of the attention grid.
    #[config(default = 8)]
    pub grid: usize,
    /// Map ImageNet-normalised input to the `[-1, 1]` scaling that Google's weights were
    /// trained with (torchvision's `transform_input`, on for its pretrained model).
    #[config(default = true)]
    pub transform_input: bool,
    /// Every channel count divided by this (1 in torchvision; only the test fixtures use more).
    #[config(default = 1)]
    pub width_divisor: usize,
}

/// Torchvision's `BasicConv2d`: convolution, batch norm (eps 0.001), ReLU.
type BasicConv<B> = ConvBn<B>;

/// Branches of 1x1, 5x5, double 3x3 and pooled 1x1 convolutions (`Mixed_5b`..`5d`).
#[derive(Module, Debug)]
pub struct InceptionA<B: Backend> {
    branch1x1: BasicConv<B>,
    branch5x5_1: BasicConv<B>,
    branch5x5_2: BasicConv<B>,
    branch3x3dbl_1: BasicConv<B>,
    branch3x3dbl_2: BasicConv<B>,
    branch3x3dbl_3: BasicConv<B>,
    branch_pool: BasicConv<B>,
}

/// Grid reduction 35 -> 17 (`Mixed_6a`).
#[derive(Module, Debug)]
pub struct InceptionB<B: Backend> {
    branch3x3: BasicConv<B>,
    branch3x3dbl_1: BasicConv<B>,
    branch3x3dbl_2: BasicConv<B>,
    branch3x3dbl_3: BasicConv<B>,
}

/// Factorised 7x7 branches (`Mixed_6b`..`6e`).
#[derive(Module, Debug)]
pub struct InceptionC<B: Backend> {
    branch1x1: BasicConv<B>,
    branch7x7_1: BasicConv<B>,
    branch7x7_2: BasicConv<B>,
    branch7x7_3: BasicConv<B>,
    branch7x7dbl_1: BasicConv<B>,
    branch7x7dbl_2: BasicConv<B>,
    branch7x7dbl_3: BasicConv<B>,
    branch7x7dbl_4: BasicConv<B>,
    branch7x7dbl_5: BasicConv<B>,
    branch_pool: BasicConv<B>,
}

/// Grid reduction 17 -> 8 (`Mixed_7a`).
#[derive(Module, Debug)]
pub struct InceptionD<B: Backend> {
    branch3x3_1: BasicConv<B>,
    branch3x3_2: BasicConv<B>,
    branch7x7x3_1: BasicConv<B>,
    branch7x7x3_2: BasicConv<B>,
    branch7x7x3_3: BasicConv<B>,
    branch7x7x3_4: BasicConv<B>,
}

/// Expanded filter banks (`Mixed_7b`, `7c`).
#[derive(Module, Debug)]
pub struct InceptionE<B: Backend> {
    branch1x1: BasicConv<B>,
    branch3x3_1: BasicConv<B>,
    branch3x3_2a: BasicConv<B>,
    branch3x3_2b: BasicConv<B>,
    branch3x3dbl_1: BasicConv<B>,
    branch3x3dbl_2: BasicConv<B>,
    branch3x3dbl_3a: BasicConv<B>,
    branch3x3dbl_3b: BasicConv<B>,
    branch_pool: BasicConv<B>,
}

/// Inception v3 without its classifier and auxiliary head.
#[derive(Module, Debug)]
pub struct InceptionV3<B: Backend> {
    conv2d_1a_3x3: BasicConv<B>,
    conv2d_2a_3x3: BasicConv<B>,
    conv2d_2b_3x3: BasicConv<B>,
    conv2d_3b_1x1: BasicConv<B>,
    conv2d_4a_3x3: BasicConv<B>,
    mixed_5: Vec<InceptionA<B>>,
    mixed_6a: InceptionB<B>,
    mixed_6: Vec<InceptionC<B>>,
    mixed_7a: InceptionD<B>,
    mixed_7: Vec<InceptionE<B>>,
    grid: usize,
    transform_input: bool,
}

/// Builds convolutions with every channel count (but the image's 3) divided by `divisor`.
struct Builder<'a, B: Backend> {
    divisor: usize,
    device: &'a B::Device,
}

impl<B: Backend> Builder<'_, B> {
    fn width(&self, channels: usize) -> usize {
        if channels == 3 {
            3
        } else {
            channels / self.divisor
        }
    }

    /// A `kh x kw` convolution with padding `[ph, pw]`.
    fn conv(
        &self,
        c: [usize; 2],
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
    ) -> BasicConv<B> {
        let shape = ConvShape {
            channels: [self.width(c[0]), self.width(c[1])],
            kernel,
            stride,
            padding,
        };
        ConvBn::new(shape, BN_EPS, self.device)
    }

    fn square(&self, c: [usize; 2], k: usize, stride: usize, padding: usize) -> BasicConv<B> {
        self.conv(c, [k, k], stride, [padding, padding])
    }

    fn a(&self, c: usize, pool_features: usize) -> InceptionA<B> {
        InceptionA {
            branch1x1: self.square([c, 64], 1, 1, 0),
            branch5x5_1: self.square([c, 48], 1, 1, 0),
            branch5x5_2: self.square([48, 64], 5, 1, 2),
            branch3x3dbl_1: self.square([c, 64], 1, 1, 0),
            branch3x3dbl_2: self.square([64, 96], 3, 1, 1),
            branch3x3dbl_3: self.square([96, 96], 3, 1, 1),
            branch_pool: self.square([c, pool_features], 1, 1, 0),
        }
    }

    fn b(&self, c: usize) -> InceptionB<B> {
        InceptionB {
            branch3x3: self.square([c, 384], 3, 2, 0),
            branch3x3dbl_1: self.square([c, 64], 1, 1, 0),
            branch3x3dbl_2: self.square([64, 96], 3, 1, 1),
            branch3x3dbl_3: self.square([96, 96], 3, 2, 0),
        }
    }

    fn c(&self, c: usize, c7: usize) -> InceptionC<B> {
        let (row, col) = (([1, 7], [0, 3]), ([7, 1], [3, 0]));
        InceptionC {
            branch1x1: self.square([c, 192], 1, 1, 0),
            branch7x7_1: self.square([c, c7], 1, 1, 0),
            branch7x7_2: self.conv([c7, c7], row.0, 1, row.1),
            branch7x7_3: self.conv([c7, 192], col.0, 1, col.1),
            branch7x7dbl_1: self.square([c, c7], 1, 1, 0),
            branch7x7dbl_2: self.conv([c7, c7], col.0, 1, col.1),
            branch7x7dbl_3: self.conv([c7, c7], row.0, 1, row.1),
            branch7x7dbl_4: self.conv([c7, c7], col.0, 1, col.1),
            branch7x7dbl_5: self.conv([c7, 192], row.0, 1, row.1),
            branch_pool: self.square([c, 192], 1, 1, 0),
        }
    }

    fn d(&self, c: usize) -> InceptionD<B> {
        InceptionD {
            branch3x3_1: self.square([c, 192], 1, 1, 0),
            branch3x3_2: self.square([192, 320], 3, 2, 0),
            branch7x7x3_1: self.square([c, 192], 1, 1, 0),
            branch7x7x3_2: self.conv([192, 192], [1, 7], 1, [0, 3]),
            branch7x7x3_3: self.conv([192, 192], [7, 1], 1, [3, 0]),
            branch7x7x3_4: self.square([192, 192], 3, 2, 0),
        }
    }

    fn e(&self, c: usize) -> InceptionE<B> {
        InceptionE {
            branch1x1: self.square([c, 320], 1, 1, 0),
            branch3x3_1: self.square([c, 384], 1, 1, 0),
            branch3x3_2a: self.conv([384, 384], [1, 3], 1, [0, 1]),
            branch3x3_2b: self.conv([384, 384], [3, 1], 1, [1, 0]),
            branch3x3dbl_1: self.square([c, 448], 1, 1, 0),
            branch3x3dbl_2: self.square([448, 384], 3, 1, 1),
            branch3x3dbl_3a: self.conv([384, 384], [1, 3], 1, [0, 1]),
            branch3x3dbl_3b: self.conv([384, 384], [3, 1], 1, [1, 0]),
            branch_pool: self.square([c, 192], 1, 1, 0),
        }
    }
}

impl BackboneConfig for InceptionV3Config {
    fn image_size(&self) -> usize {
        self.image_size
    }

    /// 2048 at full width.
    fn feature_dim(&self) -> usize {
        2048 / self.width_divisor
    }

    fn grid_positions(&self) -> usize {
        self.grid * self.grid
    }
}

impl InceptionV3Config {
    /// Builds the network with random weights and identity batch statistics.
    pub fn init<B: Backend>(&self, device: &B::Device) -> InceptionV3<B> {
        assert!(
            self.image_size >= 75,
            "Inception v3 needs images of at least 75x75, got {}",
            self.image_size
        );
        let b = Builder::<B> {
            divisor: self.width_divisor,
            device,
        };
        InceptionV3 {
            conv2d_1a_3x3: b.square([3, 32], 3, 2, 0),
            conv2d_2a_3x3: b.square([32, 32], 3, 1, 0),
            conv2d_2b_3x3: b.square([32, 64], 3, 1, 1),
            conv2d_3b_1x1: b.square([64, 80], 1, 1, 0),
            conv2d_4a_3x3: b.square([80, 192], 3, 1, 0),
            mixed_5: vec![b.a(192, 32), b.a(256, 64), b.a(288, 64)],
            mixed_6a: b.b(288),
            mixed_6: vec![b.c(768, 128), b.c(768, 160), b.c(768, 160), b.c(768, 192)],
            mixed_7a: b.d(768),
            mixed_7: vec![b.e(1280), b.e(2048)],
            grid: self.grid,
            transform_input: self.transform_input,
        }
    }
}

fn basic<B: Backend>(conv: &BasicConv<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    relu(conv.forward(x))
}

/// 3x3 average pooling, stride 1, zero padding counted (PyTorch's default).
fn pool_3x3_same<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, [3, 3], [1, 1], [1, 1], true, false)
}

fn max_pool_3x3_s2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], false)
}

impl<B: Backend> InceptionA<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = basic(&self.branch1x1, x.clone());
        let b5 = basic(&self.branch5x5_2, basic(&self.branch5x5_1, x.clone()));
        let b3 = basic(&self.branch3x3dbl_1, x.clone());
        let b3 = basic(&self.branch3x3dbl_3, basic(&self.branch3x3dbl_2, b3));
        let bp = basic(&self.branch_pool, pool_3x3_same(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

impl<B: Backend> InceptionB<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b3 = basic(&self.branch3x3, x.clone());
        let bd = basic(&self.branch3x3dbl_1, x.clone());
        let bd = basic(&self.branch3x3dbl_3, basic(&self.branch3x3dbl_2, bd));
        Tensor::cat(vec![b3, bd, max_pool_3x3_s2(x)], 1)
    }
}

impl<B: Backend> InceptionC<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = basic(&self.branch1x1, x.clone());
        let b7 = basic(&self.branch7x7_1, x.clone());
        let b7 = basic(&self.branch7x7_3, basic(&self.branch7x7_2, b7));
        let mut bd = basic(&self.branch7x7dbl_1, x.clone());
        for conv in [
            &self.branch7x7dbl_2,
            &self.branch7x7dbl_3,
            &self.branch7x7dbl_4,
            &self.branch7x7dbl_5,
        ] {
            bd = basic(conv, bd);
        }
        let bp = basic(&self.branch_pool, pool_3x3_same(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }
}

impl<B: Backend> InceptionD<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b3 = basic(&self.branch3x3_2, basic(&self.branch3x3_1, x.clone()));
        let mut b7 = basic(&self.branch7x7x3_1, x.clone());
        for conv in [
            &self.branch7x7x3_2,
            &self.branch7x7x3_3,
            &self.branch7x7x3_4,
        ] {
            b7 = basic(conv, b7);
        }
        Tensor::cat(vec![b3, b7, max_pool_3x3_s2(x)], 1)
    }
}

impl<B: Backend> InceptionE<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = basic(&self.branch1x1, x.clone());
        let b3 = basic(&self.branch3x3_1, x.clone());
        let b3 = Tensor::cat(
            vec![
                basic(&self.branch3x3_2a, b3.clone()),
                basic(&self.branch3x3_2b, b3),
            ],
            1,
        );
        let bd = basic(&self.branch3x3dbl_1, x.clone());
        let bd = basic(&self.branch3x3dbl_2, bd);
        let bd = Tensor::cat(
            vec![
                basic(&self.branch3x3dbl_3a, bd.clone()),
                basic(&self.branch3x3dbl_3b, bd),
            ],
            1,
        );
        let bp = basic(&self.branch_pool, pool_3x3_same(x));
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }
}

impl<B: Backend> InceptionV3<B> {
    /// ImageNet-normalised input rescaled to `(x - 0.5) / 0.5` of the 0..1 pixel values.
    fn transform(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.transform_input {
            renormalise(images, 2.0, -1.0)
        } else {
            images
        }
    }
}

impl<B: Backend> Backbone<B> for InceptionV3<B> {
    /// How torchvision's `.pth` keys map onto this module's names.
    const KEY_REMAPS: &'static [(&'static str, &'static str)] = &[
        (r"^Conv2d_", "conv2d_"),
        (r"^Mixed_5b\.", "mixed_5.0."),
        (r"^Mixed_5c\.", "mixed_5.1."),
        (r"^Mixed_5d\.", "mixed_5.2."),
        (r"^Mixed_6b\.", "mixed_6.0."),
        (r"^Mixed_6c\.", "mixed_6.1."),
        (r"^Mixed_6d\.", "mixed_6.2."),
        (r"^Mixed_6e\.", "mixed_6.3."),
        (r"^Mixed_7b\.", "mixed_7.0."),
        (r"^Mixed_7c\.", "mixed_7.1."),
        (r"^Mixed_", "mixed_"),
    ];

    /// `Mixed_7c`'s map, `[batch, 2048, h, w]` (8x8 at 299x299), before pooling.
    fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.transform(images);
        let x = basic(&self.conv2d_1a_3x3, x);
        let x = basic(&self.conv2d_2a_3x3, x);
        let x = max_pool_3x3_s2(basic(&self.conv2d_2b_3x3, x));
        let x = basic(&self.conv2d_3b_1x1, x);
        let x = max_pool_3x3_s2(basic(&self.conv2d_4a_3x3, x));
        let x = self.mixed_5.iter().fold(x, |x, block| block.forward(x));
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6.iter().fold(x, |x, block| block.forward(x));
        let x = self.mixed_7a.forward(x);
        self.mixed_7.iter().fold(x, |x, block| block.forward(x))
    }

    fn grid(&self) -> usize {
        self.grid
    }

    /// Stops gradients into everything before `Mixed_6a`, so that fine-tuning trains the
    /// 17x17 and 8x8 stages only.
    fn freeze_early_layers(self) -> Self {
        Self {
            conv2d_1a_3x3: self.conv2d_1a_3x3.no_grad(),
            conv2d_2a_3x3: self.conv2d_2a_3x3.no_grad(),
            conv2d_2b_3x3: self.conv2d_2b_3x3.no_grad(),
            conv2d_3b_1x1: self.conv2d_3b_1x1.no_grad(),
            conv2d_4a_3x3: self.conv2d_4a_3x3.no_grad(),
            mixed_5: self.mixed_5.no_grad(),
            ..self
        }
    }
}

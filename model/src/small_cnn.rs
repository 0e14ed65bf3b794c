//! A small CNN trained from scratch: the encoder of the shapes dataset and of the tests.
//!
//! Its three convolutions are written as "im2col + one matmul" (space-to-depth reshapes for the
//! two strided ones, nine shifted slices for the 3x3 one) rather than with `nn::conv::Conv2d`:
//! on the CPU backends the matmul form trains about 20 times faster at these sizes (measured
//! with `cargo run --release -p captioner-bench --bin conv_timing`), and it is the same
//! arithmetic on every backend.

use std::path::Path;

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::backbone::{Backbone, BackboneConfig};
use crate::torchvision_weights::{LoadedWeights, WeightsError};

/// Shape of a [`SmallCnn`].
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Side of the square input images, in pixels (a multiple of `2^channels.len()`).
    #[config(default = 64)]
    pub image_size: usize,
    /// Output channels of the 2x2 stride-2 convolutions, one per halving of the image; the
    /// last is the feature width.
    #[config(default = "vec![16, 32, 64]")]
    pub channels: Vec<usize>,
}

/// 2x2 stride-2 convolutions (one per entry of `channels`), then a 3x3 one (residual), each
/// followed by a ReLU, then layer norm: an `image_size / 2^stages` square grid of features,
/// plus a learned embedding per grid position so that the decoder can tell left from right.
#[derive(Module, Debug)]
pub struct SmallCnn<B: Backend> {
    downs: Vec<Linear<B>>,
    mix: Linear<B>,
    norm: LayerNorm<B>,
    positions: burn::module::Param<Tensor<B, 2>>,
}

impl BackboneConfig for SmallCnnConfig {
    fn image_size(&self) -> usize {
        self.image_size
    }

    /// Its last stage's channels.
    fn feature_dim(&self) -> usize {
        *self.channels.last().expect("at least one stage")
    }

    fn grid_positions(&self) -> usize {
        self.grid_size().pow(2)
    }
}

impl SmallCnnConfig {
    /// Side of the output grid.
    pub fn grid_size(&self) -> usize {
        self.image_size >> self.channels.len()
    }

    /// Builds the network with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SmallCnn<B> {
        let factor = 1 << self.channels.len();
        assert!(
            !self.channels.is_empty() && self.image_size >= factor && self.image_size.is_multiple_of(factor),
            "the small CNN with {} stages needs an image size that is a multiple of {factor}, got {}",
            self.channels.len(),
            self.image_size
        );
        let positions = burn::nn::Initializer::Normal {
            mean: 0.0,
            std: 0.1,
        }
        .init([self.grid_positions(), self.feature_dim()], device);
        let widths: Vec<usize> = std::iter::once(3)
            .chain(self.channels.iter().copied())
            .collect();
        SmallCnn {
            downs: widths
                .windows(2)
                .map(|w| LinearConfig::new(4 * w[0], w[1]).init(device))
                .collect(),
            mix: LinearConfig::new(9 * self.feature_dim(), self.feature_dim()).init(device),
            norm: LayerNormConfig::new(self.feature_dim()).init(device),
            positions,
        }
    }
}

/// `[batch, height, width, channels]` to `[batch, height/k, width/k, k*k*channels]`: the input
/// of a k x k stride-k convolution, one row per output pixel.
fn space_to_depth<B: Backend>(x: Tensor<B, 4>, k: usize) -> Tensor<B, 4> {
    let [b, h, w, c] = x.dims();
    x.reshape([b, h / k, k, w / k, k, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h / k, w / k, k * k * c])
}

/// The nine 3x3 neighbours of every pixel (zero padded), side by side:
/// `[batch, h, w, c]` to `[batch, h, w, 9c]`.
fn neighbourhoods<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, w, c] = x.dims();
    let device = x.device();
    let zeros_row = Tensor::zeros([b, 1, w, c], &device);
    let padded = Tensor::cat(vec![zeros_row.clone(), x, zeros_row], 1);
    let zeros_col = Tensor::zeros([b, h + 2, 1, c], &device);
    let padded = Tensor::cat(vec![zeros_col.clone(), padded, zeros_col], 2);
    let mut shifted = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            shifted.push(padded.clone().narrow(1, dy, h).narrow(2, dx, w));
        }
    }
    Tensor::cat(shifted, 3)
}

impl<B: Backend> SmallCnn<B> {
    /// The last convolution's map, channels last: `[batch, h, w, channels]`.
    fn map_channels_last(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = images.permute([0, 2, 3, 1]);
        for down in &self.downs {
            x = relu(down.forward(space_to_depth(x, 2)));
        }
        relu(self.mix.forward(neighbourhoods(x.clone())) + x)
    }
}

impl<B: Backend> Backbone<B> for SmallCnn<B> {
    /// It has no published weights.
    const KEY_REMAPS: &'static [(&'static str, &'static str)] = &[];

    fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        self.map_channels_last(images).permute([0, 3, 1, 2])
    }

    fn grid(&self) -> usize {
        self.positions.dims()[0].isqrt()
    }

    /// `[batch, 3, size, size]` images to `[batch, positions, channels]` features: the map,
    /// layer-normalised, plus a learned embedding per position.
    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let x = self.map_channels_last(images);
        let [b, h, w, c] = x.dims();
        let grid = self.norm.forward(x.reshape([b, h * w, c]));
        grid + self.positions.val().unsqueeze_dim(0)
    }

    /// Trained from scratch, it has no early layers to keep: returned as it is.
    fn freeze_early_layers(self) -> Self {
        self
    }

    fn load_weights(&mut self, path: &Path, _network: &str) -> Result<LoadedWeights, WeightsError> {
        Err(WeightsError::Read {
            path: path.to_path_buf(),
            message: "the small CNN has no published weights; pick a pretrained encoder                       (a ResNet, inception-v3 or efficientnet-lite0)"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn space_to_depth_groups_each_patch() {
        let device = Default::default();
        // One channel, 4x4 image with values 0..16 (row-major): patch (0,1) of size 2 holds
        // pixels (0,2), (0,3), (1,2), (1,3) = 2, 3, 6, 7.
        let x = Tensor::<NdArray, 1, Int>::arange(0..16, &device)
            .float()
            .reshape([1, 4, 4, 1]);
        let y = space_to_depth(x, 2);
        assert_eq!(y.dims(), [1, 2, 2, 4]);
        let patch: Vec<f32> = y
            .slice([0..1, 0..1, 1..2, 0..4])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(patch, [2.0, 3.0, 6.0, 7.0]);
    }

    #[test]
    fn neighbourhoods_are_zero_padded_3x3_windows() {
        let device = Default::default();
        let x = Tensor::<NdArray, 1, Int>::arange(1..10, &device)
            .float()
            .reshape([1, 3, 3, 1]);
        let y = neighbourhoods(x);
        assert_eq!(y.dims(), [1, 3, 3, 9]);
        let centre: Vec<f32> = y
            .clone()
            .slice([0..1, 1..2, 1..2, 0..9])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(centre, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let corner: Vec<f32> = y
            .slice([0..1, 0..1, 0..1, 0..9])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(corner, [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
    }
}

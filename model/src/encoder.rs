//! The encoder seam: every CNN that turns images into a grid of features is a variant here,
//! so the decoder, the training loop and inference never depend on which one is used.

use burn::prelude::*;

use crate::small_cnn::{SmallCnn, SmallCnnConfig};

/// Which encoder to build, and its settings.
#[derive(Config, Debug)]
pub enum EncoderConfig {
    /// The small CNN trained from scratch.
    SmallCnn(SmallCnnConfig),
}

/// An image encoder: `[batch, 3, size, size]` images to `[batch, positions, channels]`.
#[derive(Module, Debug)]
pub enum Encoder<B: Backend> {
    /// The small CNN trained from scratch.
    SmallCnn(SmallCnn<B>),
}

impl EncoderConfig {
    /// Builds the encoder with fresh weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Encoder<B> {
        match self {
            EncoderConfig::SmallCnn(c) => Encoder::SmallCnn(c.init(device)),
        }
    }

    /// Side of the square input images.
    pub fn image_size(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.image_size,
        }
    }

    /// Width of each grid feature.
    pub fn feature_dim(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.feature_dim(),
        }
    }

    /// Number of positions in the feature grid.
    pub fn grid_positions(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.grid_positions(),
        }
    }
}

impl<B: Backend> Encoder<B> {
    /// Encodes a batch of normalised images.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        match self {
            Encoder::SmallCnn(m) => m.forward(images),
        }
    }
}

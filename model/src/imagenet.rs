//! Encoders receive images normalised with the ImageNet mean and std
//! ([`captioner_datasets::image`]); this rescales them to what a network's weights were
//! trained with.

use burn::prelude::*;
use captioner_datasets::image::{IMAGENET_MEAN, IMAGENET_STD};

/// ImageNet-normalised `[batch, 3, h, w]` images as `pixel * scale + offset` of their 0..1
/// pixels: `(2, -1)` gives Inception's `[-1, 1]`, `(255 / 128, -127 / 128)` the
/// `(x - 127) / 128` of TF-Lite models.
pub fn renormalise<B: Backend>(images: Tensor<B, 4>, scale: f32, offset: f32) -> Tensor<B, 4> {
    let device = images.device();
    let factor = Tensor::<B, 1>::from_floats(IMAGENET_STD.map(|s| s * scale), &device);
    let shift = Tensor::<B, 1>::from_floats(IMAGENET_MEAN.map(|m| m * scale + offset), &device);
    images * factor.reshape([1, 3, 1, 1]) + shift.reshape([1, 3, 1, 1])
}

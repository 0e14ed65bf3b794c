//! Encoders receive images normalised with the ImageNet mean and std
//! ([`captioner_datasets::image`]); this rescales them to what a network's weights were
//! trained with.

use burn::prelude::*;
use captioner_datasets::image::{IMAGENET_MEAN, IMAGENET_STD};

/// ImageNet-normalised `[batch, 3, h, w]` images as `pixel * scale + offset` of their 0..1
/// pixels: `(2, -1)` gives Inception's `[-1, 1]`, `(255 / 128, -127 / 128)` the
/// `(x - 127) / 128` of TF-Lite models.
///
/// The channels' factors and shifts are repeated to the images' shape rather than broadcast:
/// flex walks a broadcast operand one index at a time.
pub fn renormalise<B: Backend>(images: Tensor<B, 4>, scale: f32, offset: f32) -> Tensor<B, 4> {
    let device = images.device();
    let dims = images.dims();
    let [batch, _, h, w] = dims;
    let per_value = |values: [f32; 3]| {
        Tensor::<B, 1>::from_floats(values, &device)
            .reshape([1, 3, 1])
            .repeat_dim(0, batch)
            .repeat_dim(2, h * w)
            .reshape(dims)
    };
    let factor = per_value(IMAGENET_STD.map(|s| s * scale));
    let shift = per_value(IMAGENET_MEAN.map(|m| m * scale + offset));
    images * factor + shift
}

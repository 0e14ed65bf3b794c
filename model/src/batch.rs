//! The model's input for one training or validation step.

use burn::prelude::*;

/// A batch of images with one caption each.
#[derive(Debug, Clone)]
pub struct CaptionBatch<B: Backend> {
    /// Normalised images, `[batch, 3, height, width]`.
    pub images: Tensor<B, 4>,
    /// Caption token ids `<start> w1 .. wn <end> <pad>..`, `[batch, max_len]`.
    pub tokens: Tensor<B, 2, Int>,
}

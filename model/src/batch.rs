//! The model's input for one training or validation step.

use burn::prelude::*;

/// A batch of images with one or more captions each (all five of an image's captions share
/// one pass of the encoder, as `seq_per_img` does in the reference PyTorch trainers).
#[derive(Debug, Clone)]
pub struct CaptionBatch<B: Backend> {
    /// Normalised images, `[images, 3, height, width]`.
    pub images: Tensor<B, 4>,
    /// Caption token ids `<start> w1 .. wn <end> <pad>..`, `[captions, max_len]`.
    pub tokens: Tensor<B, 2, Int>,
    /// For each caption, the row of its image in `images`, `[captions]`.
    pub image_of_caption: Tensor<B, 1, Int>,
}

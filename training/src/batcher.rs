//! Turns (image, caption) items into a [`CaptionBatch`] on the training device.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use captioner_datasets::image::to_normalized_chw;
use captioner_datasets::vocab::PAD;
use captioner_datasets::CaptionItem;
use captioner_model::CaptionBatch;

/// Normalises the images to the encoder's input size and pads the captions to the longest.
#[derive(Debug, Clone)]
pub struct CaptionBatcher {
    image_size: usize,
}

impl CaptionBatcher {
    /// A batcher for an encoder that takes `image_size` x `image_size` pictures.
    pub fn new(image_size: usize) -> Self {
        Self { image_size }
    }
}

impl<B: Backend> Batcher<B, CaptionItem, CaptionBatch<B>> for CaptionBatcher {
    fn batch(&self, items: Vec<CaptionItem>, device: &B::Device) -> CaptionBatch<B> {
        let n = items.len();
        let size = self.image_size;
        let max_len = items.iter().map(|i| i.tokens.len()).max().unwrap_or(2);
        let mut pixels = Vec::with_capacity(n * 3 * size * size);
        let mut tokens = vec![PAD as i64; n * max_len];
        for (row, item) in items.iter().enumerate() {
            pixels.extend(to_normalized_chw(&item.image, size));
            for (col, &t) in item.tokens.iter().enumerate() {
                tokens[row * max_len + col] = t as i64;
            }
        }
        CaptionBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), device),
            tokens: Tensor::from_data(TensorData::new(tokens, [n, max_len]), device),
        }
    }
}

//! Turns (image, captions) items into a [`CaptionBatch`] on the training device.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use captioner_datasets::image::{hflip, to_normalized_chw};
use captioner_datasets::vocab::PAD;
use captioner_datasets::CaptionItem;
use captioner_model::CaptionBatch;

/// Normalises the images to the encoder's input size, lays out every caption of every image
/// as one row padded to the longest, and records which image each caption belongs to.
#[derive(Debug, Clone)]
pub struct CaptionBatcher {
    image_size: usize,
    hflip: bool,
}

impl CaptionBatcher {
    /// A batcher for an encoder that takes `image_size` x `image_size` pictures.
    pub fn new(image_size: usize) -> Self {
        Self {
            image_size,
            hflip: false,
        }
    }

    /// Mirrors each picture left-right with probability 1/2 when `hflip` is true.
    pub fn with_hflip(self, hflip: bool) -> Self {
        Self { hflip, ..self }
    }
}

impl<B: Backend> Batcher<B, CaptionItem, CaptionBatch<B>> for CaptionBatcher {
    fn batch(&self, items: Vec<CaptionItem>, device: &B::Device) -> CaptionBatch<B> {
        let size = self.image_size;
        let captions: Vec<(usize, &Vec<u32>)> = items
            .iter()
            .enumerate()
            .flat_map(|(row, item)| item.captions.iter().map(move |c| (row, c)))
            .collect();
        let max_len = captions
            .iter()
            .map(|(_, c)| c.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let mut pixels = Vec::with_capacity(items.len() * 3 * size * size);
        for item in &items {
            if self.hflip && rand::random_bool(0.5) {
                pixels.extend(to_normalized_chw(&hflip(&item.image), size));
            } else {
                pixels.extend(to_normalized_chw(&item.image, size));
            }
        }
        let mut tokens = vec![PAD as i64; captions.len() * max_len];
        for (row, (_, caption)) in captions.iter().enumerate() {
            for (col, &t) in caption.iter().enumerate() {
                tokens[row * max_len + col] = t as i64;
            }
        }
        let image_of_caption: Vec<i64> = captions.iter().map(|(i, _)| *i as i64).collect();
        CaptionBatch {
            images: Tensor::from_data(
                TensorData::new(pixels, [items.len(), 3, size, size]),
                device,
            ),
            tokens: Tensor::from_data(TensorData::new(tokens, [captions.len(), max_len]), device),
            image_of_caption: Tensor::from_data(
                TensorData::new(image_of_caption, [captions.len()]),
                device,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use std::sync::Arc;

    #[test]
    fn model_and_vocabulary_agree_on_the_special_tokens() {
        use captioner_datasets::vocab;
        use captioner_model::tokens;
        assert_eq!(
            (tokens::PAD, tokens::START, tokens::END),
            (vocab::PAD, vocab::START, vocab::END)
        );
    }

    #[test]
    fn every_caption_becomes_a_padded_row_pointing_at_its_image() {
        let image = Arc::new(captioner_datasets::image::RgbImage::new(8, 8));
        let items = vec![
            CaptionItem {
                image: image.clone(),
                captions: vec![vec![1, 5, 2]],
            },
            CaptionItem {
                image,
                captions: vec![vec![1, 6, 7, 2], vec![1, 2]],
            },
        ];
        let batch: CaptionBatch<NdArray> = CaptionBatcher::new(8).batch(items, &Default::default());
        assert_eq!(batch.images.dims(), [2, 3, 8, 8]);
        let tokens: Vec<i64> = batch.tokens.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(tokens, [1, 5, 2, 0, 1, 6, 7, 2, 1, 2, 0, 0]);
        let rows: Vec<i64> = batch
            .image_of_caption
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(rows, [0, 1, 1]);
    }
}

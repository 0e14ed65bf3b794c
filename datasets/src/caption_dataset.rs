//! The in-memory dataset of (image, caption) pairs that the data loader draws from.

use std::sync::Arc;

use burn::data::dataset::Dataset;

use crate::image::RgbImage;

/// One training example: an image and one of its captions as token ids
/// (`<start> .. <end>`).
#[derive(Debug, Clone)]
pub struct CaptionItem {
    /// The picture, shared between the examples of its captions.
    pub image: Arc<RgbImage>,
    /// Index of the image in its split (to group the captions of one image).
    pub image_index: usize,
    /// Caption token ids, `<start>` and `<end>` included.
    pub tokens: Vec<u32>,
}

/// Images and their captions; one item per caption.
#[derive(Debug, Clone, Default)]
pub struct CaptionDataset {
    images: Vec<Arc<RgbImage>>,
    captions: Vec<(usize, Vec<u32>)>,
}

impl CaptionDataset {
    /// Adds an image with its encoded captions.
    pub fn push(&mut self, image: RgbImage, captions: impl IntoIterator<Item = Vec<u32>>) {
        let index = self.images.len();
        self.images.push(Arc::new(image));
        self.captions.extend(captions.into_iter().map(|c| (index, c)));
    }

    /// Number of distinct images.
    pub fn num_images(&self) -> usize {
        self.images.len()
    }

    /// The image at `index`.
    pub fn image(&self, index: usize) -> &Arc<RgbImage> {
        &self.images[index]
    }
}

impl Dataset<CaptionItem> for CaptionDataset {
    fn get(&self, index: usize) -> Option<CaptionItem> {
        let (image_index, tokens) = self.captions.get(index)?;
        Some(CaptionItem {
            image: self.images[*image_index].clone(),
            image_index: *image_index,
            tokens: tokens.clone(),
        })
    }

    fn len(&self) -> usize {
        self.captions.len()
    }
}

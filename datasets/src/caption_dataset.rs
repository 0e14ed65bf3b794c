//! The in-memory dataset of images and their captions that the data loader draws from.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataset::Dataset;

use crate::decode::Resize;
use crate::image::{load_rgb, RgbImage};

/// The picture of an item: decoded pixels, its file, or a row of a feature cache.
#[derive(Debug, Clone)]
pub enum ItemImage {
    /// The picture, already resized for the encoder.
    Pixels(Arc<RgbImage>),
    /// The picture's file, decoded when a batch needs it (datasets too large for memory).
    File(Arc<Path>),
    /// Row of the picture's encoder features in the run's [`crate::feature_cache::FeatureCache`].
    Cached(usize),
}

impl ItemImage {
    /// The picture resized by `resize`: as kept, or decoded from its file now; `None` for a
    /// cached item. A file that became unreadable since the preflight gives a black picture
    /// and a warning on stderr rather than stopping a long run.
    pub fn pixels(&self, resize: &Resize) -> Option<Arc<RgbImage>> {
        match self {
            ItemImage::Pixels(image) => Some(image.clone()),
            ItemImage::File(path) => Some(Arc::new(match load_rgb(path) {
                Ok(image) => resize.apply(&image),
                Err(e) => {
                    eprintln!("warning: {e} (a black picture stands in)");
                    RgbImage::new(resize.size as u32, resize.size as u32)
                }
            })),
            ItemImage::Cached(_) => None,
        }
    }
}

impl From<Arc<RgbImage>> for ItemImage {
    fn from(image: Arc<RgbImage>) -> Self {
        ItemImage::Pixels(image)
    }
}

/// One training example: an image and captions of it as token ids (`<start> .. <end>` each).
/// [`CaptionDataset`] gives one caption per item; the batcher accepts several, so that a
/// dataset may group an image's captions to share one pass of the encoder.
#[derive(Debug, Clone)]
pub struct CaptionItem {
    /// The picture.
    pub image: ItemImage,
    /// The picture's index in its dataset (the order images were pushed).
    pub image_id: usize,
    /// Its captions' token ids, `<start>` and `<end>` included.
    pub captions: Vec<Vec<u32>>,
}

/// Images and their captions; one item per caption (a shuffled epoch then mixes many images
/// in every batch, which trains markedly better on shapes than batching all five captions of
/// fewer images: 73% against 48% of test captions right after the same wall time).
#[derive(Debug, Clone, Default)]
pub struct CaptionDataset {
    images: Vec<ItemImage>,
    captions: Vec<(usize, Vec<u32>)>,
}

impl CaptionDataset {
    /// Adds an image with its encoded captions.
    pub fn push(
        &mut self,
        image: impl Into<ItemImage>,
        captions: impl IntoIterator<Item = Vec<u32>>,
    ) {
        let index = self.images.len();
        self.images.push(image.into());
        self.captions
            .extend(captions.into_iter().map(|c| (index, c)));
    }

    /// Number of distinct images.
    pub fn num_images(&self) -> usize {
        self.images.len()
    }

    /// The same images, one item per image with all of its captions (validation: one encoder
    /// pass and one searched caption per image).
    pub fn per_image(&self) -> PerImageDataset {
        let mut captions = vec![Vec::new(); self.images.len()];
        for (image, caption) in &self.captions {
            captions[*image].push(caption.clone());
        }
        PerImageDataset {
            images: self.images.clone(),
            captions,
        }
    }
}

/// Images with all of their captions, one item per image; see [`CaptionDataset::per_image`].
#[derive(Debug, Clone, Default)]
pub struct PerImageDataset {
    images: Vec<ItemImage>,
    captions: Vec<Vec<Vec<u32>>>,
}

impl PerImageDataset {
    /// The most captions any one image has.
    pub fn most_captions(&self) -> usize {
        self.captions.iter().map(Vec::len).max().unwrap_or(0)
    }
}

impl Dataset<CaptionItem> for PerImageDataset {
    fn get(&self, index: usize) -> Option<CaptionItem> {
        Some(CaptionItem {
            image: self.images.get(index)?.clone(),
            image_id: index,
            captions: self.captions[index].clone(),
        })
    }

    fn len(&self) -> usize {
        self.images.len()
    }
}

impl Dataset<CaptionItem> for CaptionDataset {
    fn get(&self, index: usize) -> Option<CaptionItem> {
        let (image_index, caption) = self.captions.get(index)?;
        Some(CaptionItem {
            image: self.images[*image_index].clone(),
            image_id: *image_index,
            captions: vec![caption.clone()],
        })
    }

    fn len(&self) -> usize {
        self.captions.len()
    }
}

//! Turns (image, captions) items into a [`CaptionBatch`] on the training device.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use captioner_datasets::image::{hflip, to_normalized_chw};
use captioner_datasets::vocab::PAD;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::Arc;

use captioner_datasets::decode::Resize;
use captioner_datasets::feature_cache::FeatureCache;
use captioner_datasets::{CaptionItem, ItemImage};
use captioner_model::{
    bucket_steps, pad_with_first_row, CaptionBatch, DecodeRequest, EncoderInput, Endings,
    SearchConfig, SelfCriticalRequest, Shapes,
};

/// Normalises the images to the encoder's input size, lays out every caption of every image
/// as one row padded to the longest (longest first), and records which image each caption
/// belongs to.
#[derive(Debug, Clone)]
pub struct CaptionBatcher {
    resize: Resize,
    /// The seed of the mirroring draws, when pictures are mirrored at random.
    hflip: Option<u64>,
    cache: Option<Arc<FeatureCache>>,
    decode: Option<(SearchConfig, Arc<Endings>, Arc<HashSet<usize>>)>,
    self_critical: Option<SelfCriticalRequest>,
    fixed: Option<FixedBatch>,
}

/// The size every batch is padded to under [`Shapes::Fixed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedBatch {
    /// Pictures (or feature grids), at least the data loader's batch size.
    pub images: usize,
    /// Captions: as many as the images for one caption per item, more when items hold all of
    /// an image's captions.
    pub captions: usize,
}

impl FixedBatch {
    /// A training batch: `batch_size` captions, each with its own picture.
    pub fn training(batch_size: usize) -> Self {
        Self {
            images: batch_size,
            captions: batch_size,
        }
    }

    /// A validation batch of whole images with up to `captions_per_image` captions each, and
    /// how many images the data loader puts in it: as many as have all their captions fit in
    /// the rows of a training batch of `batch_size` (at least one). Padded to a training
    /// batch's pictures and rows, its teacher-forced pass runs a training step's shapes, and
    /// its searches the same row count (see `captioner_model::search_rows`), so that
    /// validation meets no kernel or tuned key that training has not.
    pub fn validation(batch_size: usize, captions_per_image: usize) -> (Self, usize) {
        let per_image = captions_per_image.max(1);
        let images = (batch_size / per_image).max(1);
        let size = Self {
            images: batch_size.max(1),
            captions: batch_size.max(images * per_image),
        };
        (size, images)
    }
}

impl CaptionBatcher {
    /// A batcher for an encoder that takes `image_size` x `image_size` pictures.
    pub fn new(image_size: usize) -> Self {
        Self {
            resize: Resize {
                size: image_size,
                center_crop: true,
            },
            hflip: None,
            cache: None,
            decode: None,
            self_critical: None,
            fixed: None,
        }
    }

    /// Lays batches out for `shapes`: under [`Shapes::Fixed`] every batch is padded to
    /// `size` and its caption width to a bucket ([`bucket_steps`]).
    pub fn with_shapes(self, shapes: Shapes, size: FixedBatch) -> Self {
        Self {
            fixed: (shapes == Shapes::Fixed).then_some(size),
            ..self
        }
    }

    /// Asks the model to caption, with `search` and `endings`, the images of every batch
    /// whose ids are in `image_ids` (validation's decoded sample).
    pub fn with_decode(
        self,
        search: SearchConfig,
        endings: Arc<Endings>,
        image_ids: Arc<HashSet<usize>>,
    ) -> Self {
        Self {
            decode: Some((search, endings, image_ids)),
            ..self
        }
    }

    /// Makes every batch a self-critical step's, as `request` says (its image ids and seed
    /// are each batch's own: the seed is drawn from the request's and the batch's image ids,
    /// so that the same data order draws the same samples).
    pub fn with_self_critical(self, request: SelfCriticalRequest) -> Self {
        Self {
            self_critical: Some(request),
            ..self
        }
    }

    /// Reads cached items' encoder features from `cache`.
    pub fn with_cache(self, cache: Option<Arc<FeatureCache>>) -> Self {
        Self { cache, ..self }
    }

    /// How pictures read from their files are resized (centre crop by default).
    pub fn with_resize(self, resize: Resize) -> Self {
        Self { resize, ..self }
    }

    /// Mirrors each picture left-right with probability 1/2, drawn from `seed` and the
    /// batch's image ids (the same data order mirrors the same pictures); `None` never
    /// mirrors.
    pub fn with_hflip(self, seed: Option<u64>) -> Self {
        Self {
            hflip: seed,
            ..self
        }
    }
}

impl<B: Backend> Batcher<B, CaptionItem, CaptionBatch<B>> for CaptionBatcher {
    fn batch(&self, items: Vec<CaptionItem>, device: &B::Device) -> CaptionBatch<B> {
        let size = self.resize.size;
        let mut captions: Vec<(usize, &Vec<u32>)> = items
            .iter()
            .enumerate()
            .flat_map(|(row, item)| item.captions.iter().map(move |c| (row, c)))
            .collect();
        // Longest first: the decoder then needs no reordering (see `CaptionBatch::lengths`).
        captions.sort_by_key(|(_, c)| std::cmp::Reverse(c.len()));
        let longest = captions
            .iter()
            .map(|(_, c)| c.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let max_len = match self.fixed {
            Some(_) => bucket_steps(longest - 1) + 1,
            None => longest,
        };
        if let Some(fixed) = self.fixed {
            assert!(
                items.len() <= fixed.images && captions.len() <= fixed.captions,
                "a batch of {} images and {} captions is larger than its fixed size {fixed:?}",
                items.len(),
                captions.len()
            );
        }
        let rows = self.fixed.map_or(captions.len(), |f| f.captions);
        let input = match &items.first().map(|i| &i.image) {
            Some(ItemImage::Cached(_)) => {
                let cache = self
                    .cache
                    .as_ref()
                    .expect("cached items need the batcher's cache");
                EncoderInput::Features(cached_features(
                    cache,
                    items.iter().map(|i| &i.image),
                    device,
                ))
            }
            _ => {
                let mut flips = self.hflip.map(|seed| {
                    let ids: Vec<usize> = items.iter().map(|i| i.image_id).collect();
                    SmallRng::seed_from_u64(batch_seed(seed ^ MIRROR_STREAM, &ids))
                });
                let mut pixels = Vec::with_capacity(items.len() * 3 * size * size);
                for item in &items {
                    let image = item
                        .image
                        .pixels(&self.resize)
                        .expect("a batch mixes pixels and cached features");
                    if flips.as_mut().is_some_and(|rng| rng.random_bool(0.5)) {
                        pixels.extend(to_normalized_chw(&hflip(&image), size));
                    } else {
                        pixels.extend(to_normalized_chw(&image, size));
                    }
                }
                EncoderInput::Images(Tensor::from_data(
                    TensorData::new(pixels, [items.len(), 3, size, size]),
                    device,
                ))
            }
        };
        let input = match (self.fixed, input) {
            (Some(fixed), EncoderInput::Images(x)) => {
                EncoderInput::Images(pad_with_first_row(x, fixed.images))
            }
            (Some(fixed), EncoderInput::Features(x)) => {
                EncoderInput::Features(pad_with_first_row(x, fixed.images))
            }
            (None, input) => input,
        };
        // Padding rows (under fixed shapes) are empty captions of the first image.
        let mut tokens = vec![PAD as i64; rows * max_len];
        for (row, (_, caption)) in captions.iter().enumerate() {
            for (col, &t) in caption.iter().enumerate() {
                tokens[row * max_len + col] = t as i64;
            }
        }
        let mut image_of_caption: Vec<i64> = captions.iter().map(|(i, _)| *i as i64).collect();
        image_of_caption.resize(rows, 0);
        let mut lengths: Vec<usize> = captions.iter().map(|(_, c)| c.len()).collect();
        lengths.resize(rows, 0);
        let decode = self.decode.as_ref().map(|(search, endings, wanted)| {
            let (rows, image_ids) = items
                .iter()
                .enumerate()
                .filter(|(_, item)| wanted.contains(&item.image_id))
                .map(|(row, item)| (row, item.image_id))
                .unzip();
            DecodeRequest {
                rows,
                image_ids,
                search: *search,
                endings: endings.clone(),
            }
        });
        let self_critical = self.self_critical.as_ref().map(|template| {
            let image_ids: Vec<usize> = items.iter().map(|i| i.image_id).collect();
            SelfCriticalRequest {
                seed: batch_seed(template.seed, &image_ids),
                image_ids,
                ..template.clone()
            }
        });
        CaptionBatch {
            input,
            tokens: Tensor::from_data(TensorData::new(tokens, [rows, max_len]), device),
            image_of_caption: Tensor::from_data(TensorData::new(image_of_caption, [rows]), device),
            lengths,
            decode,
            self_critical,
            shapes: match self.fixed {
                Some(_) => Shapes::Fixed,
                None => Shapes::Packed,
            },
        }
    }
}

/// Mixed into the seed of a batch's mirroring, so that its draws are not the self-critical
/// samples' draws of the same batch.
const MIRROR_STREAM: u64 = 0x6d69_7272_6f72_2121;

/// The seed of a batch's draws: `seed` mixed with its image ids in order (SplitMix64 steps).
fn batch_seed(seed: u64, image_ids: &[usize]) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    image_ids.iter().fold(mix(seed), |h, &id| {
        mix(h ^ (id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15))
    })
}

/// The cached feature grids of `images`, `[images, positions, channels]`; every image must be
/// a row of `cache`.
pub fn cached_features<'a, B: Backend>(
    cache: &FeatureCache,
    images: impl ExactSizeIterator<Item = &'a ItemImage>,
    device: &B::Device,
) -> Tensor<B, 3> {
    let (positions, channels) = cache.grid();
    let count = images.len();
    let mut values = Vec::with_capacity(count * positions * channels);
    for image in images {
        match image {
            ItemImage::Cached(row) => cache.read_row(*row, &mut values),
            _ => panic!("pictures mixed with cached features"),
        }
    }
    Tensor::from_data(
        TensorData::new(values, [count, positions, channels]),
        device,
    )
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
    fn every_caption_becomes_a_padded_row_pointing_at_its_image_longest_first() {
        let image = Arc::new(captioner_datasets::image::RgbImage::new(8, 8));
        let items = vec![
            CaptionItem {
                image: image.clone().into(),
                image_id: 0,
                captions: vec![vec![1, 5, 2]],
            },
            CaptionItem {
                image: image.into(),
                image_id: 1,
                captions: vec![vec![1, 6, 7, 2], vec![1, 2]],
            },
        ];
        let batch: CaptionBatch<NdArray> = CaptionBatcher::new(8).batch(items, &Default::default());
        let EncoderInput::Images(images) = &batch.input else {
            panic!("pixels expected");
        };
        assert_eq!(images.dims(), [2, 3, 8, 8]);
        let tokens: Vec<i64> = batch.tokens.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(tokens, [1, 6, 7, 2, 1, 5, 2, 0, 1, 2, 0, 0]);
        let rows: Vec<i64> = batch
            .image_of_caption
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(rows, [1, 0, 1]);
        assert_eq!(batch.lengths, [4, 3, 2]);
        assert_eq!(batch.shapes, Shapes::Packed);
    }

    #[test]
    fn a_fixed_validation_batch_holds_the_whole_images_that_fill_a_training_batch() {
        let (size, images) = FixedBatch::validation(32, 5);
        assert_eq!(images, 6);
        assert_eq!(size, FixedBatch::training(32));
        // An image's captions never split: a batch too small for them grows to hold them.
        let (size, images) = FixedBatch::validation(4, 5);
        assert_eq!(images, 1);
        assert_eq!(
            size,
            FixedBatch {
                images: 4,
                captions: 5
            }
        );
    }

    #[test]
    fn fixed_shapes_pad_images_captions_and_width_to_the_same_size_for_every_batch() {
        let image = Arc::new(captioner_datasets::image::RgbImage::new(8, 8));
        let item = |id, captions| CaptionItem {
            image: image.clone().into(),
            image_id: id,
            captions,
        };
        let batcher = CaptionBatcher::new(8).with_shapes(
            Shapes::Fixed,
            FixedBatch {
                images: 3,
                captions: 4,
            },
        );
        let batch: CaptionBatch<NdArray> = batcher.batch(
            vec![
                item(0, vec![vec![1, 5, 2]]),
                item(1, vec![vec![1, 6, 7, 2]]),
            ],
            &Default::default(),
        );
        let EncoderInput::Images(images) = &batch.input else {
            panic!("pixels expected");
        };
        assert_eq!(images.dims(), [3, 3, 8, 8]);
        // 3 steps at most, bucketed to 8: 9 tokens a row.
        assert_eq!(batch.tokens.dims(), [4, 9]);
        let tokens: Vec<i64> = batch.tokens.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(&tokens[..9], &[1, 6, 7, 2, 0, 0, 0, 0, 0]);
        assert!(
            tokens[18..].iter().all(|&t| t == 0),
            "padding rows are empty"
        );
        assert_eq!(batch.lengths, [4, 3, 0, 0]);
        let rows: Vec<i64> = batch
            .image_of_caption
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(rows, [1, 0, 0, 0]);
        assert_eq!(batch.shapes, Shapes::Fixed);
    }

    #[test]
    fn random_mirroring_is_a_function_of_the_seed_and_the_batch() {
        // A picture whose left half is white: mirrored, its first pixel is black.
        let mut picture = captioner_datasets::image::RgbImage::new(8, 8);
        for (x, _, pixel) in picture.enumerate_pixels_mut() {
            if x < 4 {
                *pixel = ::image::Rgb([255, 255, 255]);
            }
        }
        let picture = Arc::new(picture);
        let items: Vec<CaptionItem> = (0..16)
            .map(|id| CaptionItem {
                image: picture.clone().into(),
                image_id: id,
                captions: vec![vec![1, 5, 2]],
            })
            .collect();
        let mirrored = |seed: Option<u64>| -> Vec<bool> {
            let batch: CaptionBatch<NdArray> = CaptionBatcher::new(8)
                .with_hflip(seed)
                .batch(items.clone(), &Default::default());
            let EncoderInput::Images(images) = batch.input else {
                panic!("pixels expected");
            };
            let first_pixels = images.slice([0..16, 0..1, 0..1, 0..1]).into_data();
            let values: Vec<f32> = first_pixels.convert::<f32>().to_vec().unwrap();
            values.iter().map(|&v| v < 0.0).collect()
        };
        let once = mirrored(Some(3));
        assert_eq!(
            once,
            mirrored(Some(3)),
            "the same seed mirrors the same pictures"
        );
        assert_ne!(once, mirrored(Some(4)), "another seed mirrors others");
        // Mirroring has its own stream of the seed: not the self-critical samples' draws.
        let mut samples_stream =
            SmallRng::seed_from_u64(batch_seed(3, &(0..16).collect::<Vec<_>>()));
        let samples_draws: Vec<bool> = (0..16).map(|_| samples_stream.random_bool(0.5)).collect();
        assert_ne!(once, samples_draws);
        let flipped = once.iter().filter(|&&m| m).count();
        assert!((3..=13).contains(&flipped), "{flipped} of 16 mirrored");
        assert!(mirrored(None).iter().all(|&m| !m), "no seed, no mirroring");
    }
}

//! Captioning whole sets of images and grading the captions.

use std::ops::Range;
use std::sync::Arc;

use burn::prelude::*;
use captioner_datasets::image::RgbImage;

use captioner_datasets::decode::Resize;
use captioner_datasets::feature_cache::FeatureCache;
use captioner_datasets::progress::Progress;
use captioner_datasets::shapes::{CaptionCheck, Scene, ShapesConfig};
use captioner_datasets::ItemImage;
use captioner_datasets::Split;
use captioner_model::{Batching, Captioning, Ensemble, SearchConfig};
use serde::{Deserialize, Serialize};

use crate::batcher::cached_features;
use crate::coco_files::ImageId;
use crate::metrics::{coco_scores_of_raw, CocoScores};

/// The images a run is scored on, with their reference captions.
#[derive(Debug, Clone)]
pub struct HeldOut {
    /// Which split they are.
    pub split: Split,
    /// The pictures (or their rows in `cache`).
    pub images: Vec<ItemImage>,
    /// Their ids in results files: the file name of a picture on disk, the index of a scene.
    pub ids: Vec<ImageId>,
    /// Each picture's reference captions, as the annotations write them.
    pub references: Vec<Vec<String>>,
    /// For the shapes dataset, the scenes themselves, so that captions can be checked.
    pub scenes: Option<Vec<Scene>>,
    /// The feature cache that `images` point into, if they are cached.
    pub cache: Option<Arc<FeatureCache>>,
    /// How pictures read from files are resized.
    pub resize: Resize,
}

impl HeldOut {
    /// The `split` scenes of the shapes dataset.
    pub fn shapes(config: &ShapesConfig, split: Split) -> Self {
        let scenes = config.scenes(split);
        Self {
            split,
            images: scenes
                .iter()
                .map(|s| Arc::new(s.render(config.image_size)).into())
                .collect(),
            ids: (0..scenes.len() as u64).map(ImageId::Number).collect(),
            references: scenes.iter().map(|s| s.captions()).collect(),
            scenes: Some(scenes),
            cache: None,
            resize: Resize {
                size: config.image_size,
                center_crop: false,
            },
        }
    }

    /// `model`'s grids of the images at `images` (`[images, positions, channels]`): read from
    /// the feature cache, or the pictures decoded and encoded now.
    pub fn features<B: Backend>(
        &self,
        model: &Captioning<B>,
        images: Range<usize>,
        batching: Batching,
    ) -> Tensor<B, 3> {
        let images = &self.images[images];
        if let Some(cache) = &self.cache {
            return cached_features(cache, images.iter(), model.device());
        }
        let pictures: Vec<Arc<RgbImage>> = images
            .iter()
            .map(|i| {
                i.pixels(&self.resize)
                    .expect("cached pictures come with their cache")
            })
            .collect();
        let pictures: Vec<&RgbImage> = pictures.iter().map(|p| p.as_ref()).collect();
        model.encode(&pictures, batching)
    }
}

/// Shapes only: captions checked against the scenes they describe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShapesScores {
    /// Share of captions that name every object with its right colour and shape, and nothing
    /// else.
    pub objects_accuracy: f64,
    /// Share of captions whose stated sizes are all right.
    pub sizes_accuracy: f64,
    /// Share of captions whose stated spatial relations all hold.
    pub relations_accuracy: f64,
    /// Share of captions right on all three counts.
    pub all_correct: f64,
}

/// How well a model captions held-out images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The split scored.
    pub split: Split,
    /// Images captioned.
    pub images: usize,
    /// Beams kept while decoding.
    pub beam_size: usize,
    /// BLEU-1..4, ROUGE-L and CIDEr-D against each image's reference captions, as
    /// coco-caption computes them.
    pub scores: CocoScores,
    /// Shapes only: the captions checked against the scenes.
    pub shapes: Option<ShapesScores>,
    /// A few (generated caption, first reference) pairs.
    pub examples: Vec<(String, String)>,
    /// Whether this split picked the run's best epoch (so its scores are not held out).
    #[serde(default)]
    pub picked_best_epoch: bool,
}

impl std::fmt::Display for EvalReport {
    /// The scores as the binaries print them, one item a line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.shapes.is_some() {
            "scenes"
        } else {
            "images"
        };
        if self.picked_best_epoch {
            writeln!(
                f,
                "{} {what} (the split that picked the best epoch): {} (beam size {})",
                self.split, self.images, self.beam_size
            )?;
        } else {
            writeln!(
                f,
                "Held-out {} {what}: {} (beam size {})",
                self.split, self.images, self.beam_size
            )?;
        }
        if let Some(s) = &self.shapes {
            writeln!(
                f,
                "  captions naming every object's colour and shape: {:.1}%",
                100.0 * s.objects_accuracy
            )?;
            writeln!(
                f,
                "  sizes right: {:.1}%   relations right: {:.1}%   all right: {:.1}%",
                100.0 * s.sizes_accuracy,
                100.0 * s.relations_accuracy,
                100.0 * s.all_correct
            )?;
        }
        let s = &self.scores;
        writeln!(
            f,
            "  BLEU-1..4: {:.3} {:.3} {:.3} {:.3}   ROUGE-L: {:.3}   CIDEr-D: {:.3}",
            s.bleu[0], s.bleu[1], s.bleu[2], s.bleu[3], s.rouge_l, s.cider
        )?;
        for (generated, reference) in &self.examples {
            writeln!(f, "  \"{generated}\"   (reference: \"{reference}\")")?;
        }
        Ok(())
    }
}

/// Captions every image of a split with `ensemble` (one model or several) once for each of
/// `searches`, `batching.batch_size` images at a time, with a progress bar; returns, for each
/// search in order, the captions as words joined by spaces. Each batch of images is encoded
/// (or read from its cache) once for all the searches. `held_out[m]` is the split as model `m`
/// reads it (from its feature cache, or pictures prepared its way): the same images in the
/// same order.
pub fn caption_held_out<B: Backend>(
    ensemble: &Ensemble<B>,
    held_out: &[&HeldOut],
    searches: &[SearchConfig],
    batching: Batching,
) -> Vec<Vec<String>> {
    assert_eq!(ensemble.members().len(), held_out.len(), "a split a model");
    let n = held_out[0].images.len();
    let step = batching.batch_size.max(1);
    let bar = Progress::new("captioning", n, true);
    let mut captions: Vec<Vec<_>> = searches.iter().map(|_| Vec::with_capacity(n)).collect();
    for start in (0..n).step_by(step) {
        let images = start..(start + step).min(n);
        let features: Vec<Tensor<B, 3>> = ensemble
            .members()
            .iter()
            .zip(held_out)
            .map(|(model, split)| split.features(model, images.clone(), batching))
            .collect();
        for (search, captions) in searches.iter().zip(&mut captions) {
            captions.extend(ensemble.caption_features(features.clone(), search, batching));
        }
        bar.inc(images.len());
    }
    bar.finish();
    let vocab = ensemble.vocab();
    captions
        .iter()
        .map(|found| found.iter().map(|c| vocab.decode(&c.tokens)).collect())
        .collect()
}

/// Scores `texts`, the captions of `held_out`'s images found with `beam_size` beams.
pub fn score_captions(held_out: &HeldOut, texts: &[String], beam_size: usize) -> EvalReport {
    let shapes = held_out.scenes.as_ref().map(|scenes| {
        let checks: Vec<CaptionCheck> = scenes
            .iter()
            .zip(texts)
            .map(|(s, t)| s.check_caption(t))
            .collect();
        let share = |f: &dyn Fn(&CaptionCheck) -> bool| {
            checks.iter().filter(|c| f(c)).count() as f64 / checks.len().max(1) as f64
        };
        ShapesScores {
            objects_accuracy: share(&|c| c.objects),
            sizes_accuracy: share(&|c| c.sizes),
            relations_accuracy: share(&|c| c.relations),
            all_correct: share(&|c| c.all()),
        }
    });
    EvalReport {
        split: held_out.split,
        images: held_out.images.len(),
        beam_size,
        scores: coco_scores_of_raw(texts, &held_out.references),
        shapes,
        examples: texts
            .iter()
            .zip(&held_out.references)
            .take(5)
            .map(|(t, r)| (t.clone(), r.first().cloned().unwrap_or_default()))
            .collect(),
        picked_best_epoch: false,
    }
}

/// Captions `held_out`, `batching.batch_size` images at a time, and scores the captions.
pub fn evaluate<B: Backend>(
    captioning: &Captioning<B>,
    held_out: &HeldOut,
    search: &SearchConfig,
    batching: Batching,
) -> EvalReport {
    let searches = std::slice::from_ref(search);
    let texts = caption_held_out(&Ensemble::one(captioning), &[held_out], searches, batching);
    score_captions(held_out, &texts[0], search.beam_size)
}

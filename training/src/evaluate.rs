//! Captioning whole sets of images and grading the captions.

use burn::prelude::*;
use captioner_datasets::image::{to_normalized_chw, RgbImage};
use captioner_datasets::shapes::Scene;
use captioner_datasets::{tokenize, Vocab};
use captioner_model::{Caption, Captioner, SearchConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::bleu::corpus_bleu;

/// Captions `images` in batches of `batch_size` with a progress bar (hidden when
/// `show_progress` is false or stderr is not a terminal).
pub fn caption_images<B: Backend>(
    model: &Captioner<B>,
    images: &[&RgbImage],
    image_size: usize,
    search: &SearchConfig,
    batch_size: usize,
    device: &B::Device,
    show_progress: bool,
) -> Vec<Caption> {
    let bar = if show_progress {
        ProgressBar::new(images.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "captioning {bar:30} {pos}/{len} images  {per_sec}  eta {eta}",
        )
        .expect("valid template"),
    );
    let mut captions = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch_size.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * image_size * image_size);
        for image in chunk {
            pixels.extend(to_normalized_chw(image, image_size));
        }
        let batch = Tensor::from_data(
            TensorData::new(pixels, [chunk.len(), 3, image_size, image_size]),
            device,
        );
        captions.extend(model.caption(batch, search));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    captions
}

/// How well a model captions held-out shapes scenes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShapesReport {
    /// Scenes captioned.
    pub images: usize,
    /// Share of captions that name every object with its right colour and shape, and nothing
    /// else.
    pub objects_accuracy: f64,
    /// Share of captions whose stated sizes are all right.
    pub sizes_accuracy: f64,
    /// Share of captions whose stated spatial relations all hold.
    pub relations_accuracy: f64,
    /// Share of captions right on all three counts.
    pub all_correct: f64,
    /// Corpus BLEU-1..4 against the five reference captions of each scene.
    pub bleu: [f64; 4],
    /// A few (generated caption, first reference) pairs.
    pub examples: Vec<(String, String)>,
}

/// Captions `scenes` with `model` and grades the captions against the scenes themselves.
pub fn evaluate_shapes<B: Backend>(
    model: &Captioner<B>,
    vocab: &Vocab,
    scenes: &[Scene],
    image_size: usize,
    search: &SearchConfig,
    device: &B::Device,
) -> ShapesReport {
    let rendered: Vec<RgbImage> = scenes.iter().map(|s| s.render(image_size)).collect();
    let images: Vec<&RgbImage> = rendered.iter().collect();
    let captions = caption_images(model, &images, image_size, search, 64, device, true);
    let texts: Vec<String> = captions.iter().map(|c| vocab.decode(&c.tokens)).collect();
    let references: Vec<Vec<String>> = scenes
        .iter()
        .map(|s| s.captions().iter().map(|c| tokenize(c).join(" ")).collect())
        .collect();
    let checks: Vec<_> = scenes
        .iter()
        .zip(&texts)
        .map(|(s, t)| s.check_caption(t))
        .collect();
    let share = |f: &dyn Fn(&captioner_datasets::shapes::CaptionCheck) -> bool| {
        checks.iter().filter(|c| f(c)).count() as f64 / checks.len().max(1) as f64
    };
    ShapesReport {
        images: scenes.len(),
        objects_accuracy: share(&|c| c.objects),
        sizes_accuracy: share(&|c| c.sizes),
        relations_accuracy: share(&|c| c.relations),
        all_correct: share(&|c| c.all()),
        bleu: corpus_bleu(&texts, &references),
        examples: texts
            .iter()
            .zip(&references)
            .take(5)
            .map(|(t, r)| (t.clone(), r[0].clone()))
            .collect(),
    }
}

//! The hooks through which `burn-train`'s `Learner` drives the captioner.
//!
//! A training step is teacher-forced. A validation step is teacher-forced too (the loss and
//! accuracy metrics), and also captions the images its batch asks for by beam search, from
//! the same encoder pass, so that the validation metric can be the real BLEU and CIDEr.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::batch::CaptionBatch;
use crate::captioner::{Captioner, CaptionerOutput};

impl<B: Backend> CaptionerOutput<B> {
    /// What burn-train's loss and accuracy metrics read.
    fn into_sequence(self) -> SequenceOutput<B> {
        SequenceOutput::new(self.loss, self.logits, None, self.targets)
    }
}

impl<B: AutodiffBackend> TrainStep for Captioner<B> {
    type Input = CaptionBatch<B>;
    type Output = SequenceOutput<B>;

    fn step(&self, batch: CaptionBatch<B>) -> TrainOutput<SequenceOutput<B>> {
        let item = self.forward(batch).into_sequence();
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

/// A caption made during validation, for the image `image_id` of the validation set.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageCaption {
    /// The image's id in its dataset (see [`crate::batch::DecodeRequest`]).
    pub image_id: usize,
    /// Word ids, without `<start>` and `<end>`.
    pub tokens: Vec<u32>,
}

/// What a validation step yields: the teacher-forced output (`S` is burn-train's
/// [`SequenceOutput`], on the device or synced to the host) and the captions searched.
#[derive(Debug)]
pub struct ValidationOutput<S> {
    /// Loss, logits and targets of the teacher-forced pass.
    pub sequence: S,
    /// The captions of the images the batch asked for.
    pub captions: Vec<ImageCaption>,
}

impl<B: Backend> ItemLazy for ValidationOutput<SequenceOutput<B>> {
    type ItemSync = ValidationOutput<<SequenceOutput<B> as ItemLazy>::ItemSync>;

    fn sync(self) -> Self::ItemSync {
        ValidationOutput {
            sequence: self.sequence.sync(),
            captions: self.captions,
        }
    }
}

impl<B: Backend, S: Adaptor<LossInput<B>>> Adaptor<LossInput<B>> for ValidationOutput<S> {
    fn adapt(&self) -> LossInput<B> {
        self.sequence.adapt()
    }
}

impl<B: Backend, S: Adaptor<AccuracyInput<B>>> Adaptor<AccuracyInput<B>> for ValidationOutput<S> {
    fn adapt(&self) -> AccuracyInput<B> {
        self.sequence.adapt()
    }
}

impl<B: Backend> InferenceStep for Captioner<B> {
    type Input = CaptionBatch<B>;
    type Output = ValidationOutput<SequenceOutput<B>>;

    fn step(&self, batch: CaptionBatch<B>) -> Self::Output {
        let features = self.encode(batch.input);
        let captions = match batch.decode {
            Some(request) if !request.rows.is_empty() => {
                // Under fixed shapes, searches of a training batch's row count.
                let batch_rows = batch.tokens.dims()[0];
                let captions = self.caption_rows(
                    features.clone(),
                    &request.rows,
                    &request.search,
                    batch.shapes,
                    batch_rows,
                );
                captions
                    .into_iter()
                    .zip(request.image_ids)
                    .map(|(caption, image_id)| ImageCaption {
                        image_id,
                        tokens: caption.tokens,
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let out = self.forward_features(
            features,
            batch.tokens,
            batch.image_of_caption,
            &batch.lengths,
            batch.shapes,
        );
        ValidationOutput {
            sequence: out.into_sequence(),
            captions,
        }
    }
}

impl<S> Adaptor<Vec<ImageCaption>> for ValidationOutput<S> {
    fn adapt(&self) -> Vec<ImageCaption> {
        self.captions.clone()
    }
}

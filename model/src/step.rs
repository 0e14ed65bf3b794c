//! The hooks through which `burn-train`'s `Learner` drives the captioner.
//!
//! A training step is teacher-forced, or self-critical when its batch asks for it (see
//! [`crate::self_critical`]). A validation step is teacher-forced too (the loss and
//! accuracy metrics), and also captions the images its batch asks for by beam search, from
//! the same encoder pass, so that the validation metric can be the real BLEU and CIDEr.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::batch::CaptionBatch;
use crate::captioner::{Captioner, CaptionerOutput};
use crate::self_critical::SelfCriticalStats;

impl<B: Backend> CaptionerOutput<B> {
    /// What burn-train's loss and accuracy metrics read.
    fn into_sequence(self) -> SequenceOutput<B> {
        SequenceOutput::new(self.loss, self.logits, None, self.targets)
    }
}

/// What a step yields: the loss (and, teacher-forced, the logits and targets that the
/// accuracy metric reads) of its teacher-forced pass as burn-train's [`SequenceOutput`] (`S`,
/// on the device or synced to the host), and what else the step made (`E`), read by its own
/// metrics: see [`TrainStepOutput`] and [`ValidationOutput`].
#[derive(Debug)]
pub struct StepOutput<S, E> {
    /// The loss, logits and targets of the step's teacher-forced pass (self-critical: over
    /// the samples).
    pub sequence: S,
    /// What else the step made.
    pub extra: E,
}

/// A training step's output; the extra is what a self-critical step saw of its samples
/// (rewards and lengths), `None` when the step was teacher-forced.
pub type TrainStepOutput<S> = StepOutput<S, Option<SelfCriticalStats>>;

/// A validation step's output; the extra is the captions searched for the images its batch
/// asked for.
pub type ValidationOutput<S> = StepOutput<S, Vec<ImageCaption>>;

impl<B: Backend, E: Send> ItemLazy for StepOutput<SequenceOutput<B>, E> {
    type ItemSync = StepOutput<<SequenceOutput<B> as ItemLazy>::ItemSync, E>;

    fn sync(self) -> Self::ItemSync {
        StepOutput {
            sequence: self.sequence.sync(),
            extra: self.extra,
        }
    }
}

impl<B: Backend, S: Adaptor<LossInput<B>>, E> Adaptor<LossInput<B>> for StepOutput<S, E> {
    fn adapt(&self) -> LossInput<B> {
        self.sequence.adapt()
    }
}

impl<B: Backend, S: Adaptor<AccuracyInput<B>>, E> Adaptor<AccuracyInput<B>> for StepOutput<S, E> {
    fn adapt(&self) -> AccuracyInput<B> {
        self.sequence.adapt()
    }
}

/// A step's loss as a number, for the metric that stops a run whose loss is not finite.
#[derive(Debug, Clone, Copy)]
pub struct StepLoss(pub f32);

impl<B: Backend, E> Adaptor<StepLoss> for StepOutput<SequenceOutput<B>, E> {
    /// Reads the loss of a synced step output (the metric thread's: no device round trip).
    fn adapt(&self) -> StepLoss {
        StepLoss(self.sequence.loss.clone().into_scalar().elem::<f32>())
    }
}

impl<S> Adaptor<Option<SelfCriticalStats>> for TrainStepOutput<S> {
    fn adapt(&self) -> Option<SelfCriticalStats> {
        self.extra
    }
}

impl<S> Adaptor<Vec<ImageCaption>> for ValidationOutput<S> {
    fn adapt(&self) -> Vec<ImageCaption> {
        self.extra.clone()
    }
}

impl<B: AutodiffBackend> TrainStep for Captioner<B> {
    type Input = CaptionBatch<B>;
    type Output = TrainStepOutput<SequenceOutput<B>>;

    fn step(&self, mut batch: CaptionBatch<B>) -> TrainOutput<Self::Output> {
        let (out, self_critical) = match batch.self_critical.take() {
            None => (self.forward(batch), None),
            Some(request) => {
                let rows = batch.tokens.dims()[0];
                let features = self.encode(batch.input);
                let (out, stats) = self.self_critical(features, &request, batch.shapes, rows);
                (out, Some(stats))
            }
        };
        let sequence = out.into_sequence();
        let grads = sequence.loss.backward();
        let item = StepOutput {
            sequence,
            extra: self_critical,
        };
        TrainOutput::new(self, grads, item)
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
                    &request.endings,
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
        StepOutput {
            sequence: out.into_sequence(),
            extra: captions,
        }
    }
}

//! The hooks through which `burn-train`'s `Learner` drives the captioner.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::batch::CaptionBatch;
use crate::captioner::Captioner;

fn to_sequence_output<B: Backend>(
    captioner: &Captioner<B>,
    batch: CaptionBatch<B>,
) -> SequenceOutput<B> {
    let out = captioner.forward(batch);
    SequenceOutput::new(out.loss, out.logits, None, out.targets)
}

impl<B: AutodiffBackend> TrainStep for Captioner<B> {
    type Input = CaptionBatch<B>;
    type Output = SequenceOutput<B>;

    fn step(&self, batch: CaptionBatch<B>) -> TrainOutput<SequenceOutput<B>> {
        let item = to_sequence_output(self, batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl<B: Backend> InferenceStep for Captioner<B> {
    type Input = CaptionBatch<B>;
    type Output = SequenceOutput<B>;

    fn step(&self, batch: CaptionBatch<B>) -> SequenceOutput<B> {
        to_sequence_output(self, batch)
    }
}

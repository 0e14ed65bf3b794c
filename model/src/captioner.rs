//! The whole captioner: encoder + attention decoder, and its training loss.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::batch::{CaptionBatch, EncoderInput};
use crate::decoder::{Decoder, DecoderConfig};
use crate::encoder::{Encoder, EncoderConfig};
use crate::tokens::PAD;

/// Everything needed to rebuild a [`Captioner`]; saved as `model.json` in each run folder.
#[derive(Config, Debug)]
pub struct CaptionerConfig {
    /// The image encoder.
    pub encoder: EncoderConfig,
    /// The attention decoder (its `feature_dim` must match the encoder's).
    pub decoder: DecoderConfig,
    /// Weight `lambda` of the doubly stochastic attention regularisation.
    #[config(default = 1.0)]
    pub attention_regularization: f32,
}

/// Encoder, decoder and the loss weight.
#[derive(Module, Debug)]
pub struct Captioner<B: Backend> {
    /// The image encoder.
    pub encoder: Encoder<B>,
    /// The attention decoder.
    pub decoder: Decoder<B>,
    attention_regularization: f32,
}

/// The result of a teacher-forced forward pass.
#[derive(Debug, Clone)]
pub struct CaptionerOutput<B: Backend> {
    /// Cross-entropy plus attention regularisation (scalar, `[1]`).
    pub loss: Tensor<B, 1>,
    /// Cross-entropy over the real (non-padding) target tokens.
    pub cross_entropy: Tensor<B, 1>,
    /// Scores of each next word, `[batch, steps, vocab]`.
    pub logits: Tensor<B, 3>,
    /// Target token ids (padding included), `[batch, steps]`.
    pub targets: Tensor<B, 2, Int>,
    /// Attention weights, `[batch, steps, positions]`.
    pub alphas: Tensor<B, 3>,
}

impl CaptionerConfig {
    /// Builds the model with fresh weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Captioner<B> {
        self.init_with_encoder(self.encoder.init(device), device)
    }

    /// Builds the model around an existing `encoder` (made from `self.encoder`), with a fresh
    /// decoder.
    pub fn init_with_encoder<B: Backend>(
        &self,
        encoder: Encoder<B>,
        device: &B::Device,
    ) -> Captioner<B> {
        assert_eq!(
            self.encoder.feature_dim(),
            self.decoder.feature_dim,
            "the decoder's feature_dim must match the encoder's output width"
        );
        Captioner {
            encoder,
            decoder: self.decoder.init(device),
            attention_regularization: self.attention_regularization,
        }
    }
}

impl<B: Backend> Captioner<B> {
    /// The feature grid of a batch: the encoder's output, or the cached features as they are.
    pub fn encode(&self, input: EncoderInput<B>) -> Tensor<B, 3> {
        match input {
            EncoderInput::Images(images) => self.encoder.forward(images),
            EncoderInput::Features(features) => features,
        }
    }

    /// Teacher-forced pass and loss: cross-entropy over the non-padding targets plus
    /// `lambda * mean_{b,p} (1 - sum_t alpha_tp)^2`, the doubly stochastic regularisation of
    /// Xu et al. (the paper sums over positions; dividing by their number, as the widely used
    /// PyTorch implementation does, makes `lambda = 1` a sensible default for any grid size).
    /// Steps after a caption's end are masked out of both terms, so padding never changes
    /// the loss.
    pub fn forward(&self, batch: CaptionBatch<B>) -> CaptionerOutput<B> {
        let features = self.encode(batch.input);
        self.forward_features(features, batch.tokens, batch.image_of_caption)
    }

    /// [`Captioner::forward`] from the images' feature grids `[images, positions, channels]`,
    /// for callers that use the grids for something else too.
    pub fn forward_features(
        &self,
        features: Tensor<B, 3>,
        tokens: Tensor<B, 2, Int>,
        image_of_caption: Tensor<B, 1, Int>,
    ) -> CaptionerOutput<B> {
        let [batch_size, len] = tokens.dims();
        let inputs = tokens.clone().narrow(1, 0, len - 1);
        let targets = tokens.narrow(1, 1, len - 1);
        let features = features.select(0, image_of_caption);
        let out = self.decoder.forward(features, inputs);

        let mask = targets.clone().not_equal_elem(PAD as i32).float();
        let log_probs = log_softmax(out.logits.clone(), 2);
        let picked = log_probs
            .gather(2, targets.clone().unsqueeze_dim::<3>(2))
            .squeeze_dim::<2>(2);
        let real_tokens = mask.clone().sum().clamp_min(1.0);
        let cross_entropy = (picked * mask.clone()).sum().neg() / real_tokens;

        let [_, _, positions] = out.alphas.dims();
        let attention_total = (out.alphas.clone() * mask.unsqueeze_dim::<3>(2)).sum_dim(1);
        let regularization = (attention_total.neg() + 1.0)
            .powi_scalar(2)
            .sum()
            .div_scalar((batch_size * positions) as f32)
            .mul_scalar(self.attention_regularization);

        CaptionerOutput {
            loss: cross_entropy.clone() + regularization,
            cross_entropy,
            logits: out.logits,
            targets,
            alphas: out.alphas,
        }
    }
}

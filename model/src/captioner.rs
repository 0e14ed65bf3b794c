//! The whole captioner: encoder + attention decoder, its training loss and its captions.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use captioner_datasets::decode::Resize;

use crate::batch::{CaptionBatch, EncoderInput};
use crate::decoder::{packed_positions, step_mask, Decoder, DecoderConfig};
use crate::encoder::{Encoder, EncoderConfig};
use crate::rows::{index_tensor, Shapes};
use crate::search::{search_rows, Caption, SearchConfig};

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
    /// How a picture becomes the encoder's input, as the training pictures did; `None` in
    /// runs saved before it was recorded here (see [`crate::inference`]).
    pub input: Option<Resize>,
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
    /// Scores of the next words, for the metrics. [`Shapes::Packed`]: every real next word
    /// (no padding), as one sequence in the decoder's packed order (see
    /// [`packed_positions`]), `[1, words, vocab]`. [`Shapes::Fixed`]: every step of every
    /// caption, `[captions, steps, vocab]`, their targets `<pad>` past the caption's end.
    pub logits: Tensor<B, 3>,
    /// The words they score, `[1, words]` or `[captions, steps]`.
    pub targets: Tensor<B, 2, Int>,
    /// Attention weights, `[captions, steps, positions]`, zero after a caption's end, the
    /// captions sorted by decreasing length ([`Shapes::Packed`]) or as given.
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
        self.forward_features(
            features,
            batch.tokens,
            batch.image_of_caption,
            &batch.lengths,
            batch.shapes,
        )
    }

    /// [`Captioner::forward`] from the images' feature grids `[images, positions, channels]`,
    /// for callers that use the grids for something else too.
    pub fn forward_features(
        &self,
        features: Tensor<B, 3>,
        tokens: Tensor<B, 2, Int>,
        image_of_caption: Tensor<B, 1, Int>,
        lengths: &[usize],
        shapes: Shapes,
    ) -> CaptionerOutput<B> {
        teacher_forced_loss(
            &self.decoder,
            self.attention_regularization,
            features.select(0, image_of_caption),
            tokens,
            lengths,
            shapes,
        )
    }

    /// Captions a batch of normalised images `[batch, 3, size, size]`, all in one search.
    pub fn caption(&self, images: Tensor<B, 4>, search: &SearchConfig) -> Vec<Caption> {
        self.caption_features(self.encoder.forward(images), search, Shapes::Packed, 0)
    }

    /// Captions every grid of `features` (`[n, positions, channels]`) with `shapes`; under
    /// [`Shapes::Fixed`], in searches of `rows` decoder rows ([`search_rows`]).
    pub fn caption_features(
        &self,
        features: Tensor<B, 3>,
        search: &SearchConfig,
        shapes: Shapes,
        rows: usize,
    ) -> Vec<Caption> {
        let all: Vec<usize> = (0..features.dims()[0]).collect();
        search_rows(&self.decoder, features, &all, search, shapes, rows)
    }

    /// Captions the grids of `features` at rows `picks`, in that order (see
    /// [`search_rows`]).
    pub fn caption_rows(
        &self,
        features: Tensor<B, 3>,
        picks: &[usize],
        search: &SearchConfig,
        shapes: Shapes,
        rows: usize,
    ) -> Vec<Caption> {
        search_rows(&self.decoder, features, picks, search, shapes, rows)
    }
}

/// The loss of [`Captioner::forward`] for `decoder` alone, given each caption's own feature
/// grid `[captions, positions, channels]`, its tokens `[captions, max_len]` and its length
/// (`<start>` and `<end>` included; 0 for a padding row, which [`Shapes::Fixed`] allows).
/// `shapes` picks how the decoder unrolls; the loss and its gradients are the same.
pub fn teacher_forced_loss<B: Backend>(
    decoder: &Decoder<B>,
    attention_regularization: f32,
    features: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    lengths: &[usize],
    shapes: Shapes,
) -> CaptionerOutput<B> {
    match shapes {
        Shapes::Packed => packed_loss(decoder, attention_regularization, features, tokens, lengths),
        Shapes::Fixed => masked_loss(decoder, attention_regularization, features, tokens, lengths),
    }
}

/// [`teacher_forced_loss`] with every step of every row decoded and the steps past each
/// caption's end masked out (fixed shapes).
fn masked_loss<B: Backend>(
    decoder: &Decoder<B>,
    attention_regularization: f32,
    features: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    lengths: &[usize],
) -> CaptionerOutput<B> {
    let [batch_size, len] = tokens.dims();
    assert_eq!(lengths.len(), batch_size, "one length per caption");
    let width = len - 1;
    let device = tokens.device();
    let steps: Vec<usize> = lengths
        .iter()
        .map(|&l| l.saturating_sub(1).min(width))
        .collect();
    let words = steps.iter().sum::<usize>().max(1);
    let captions = steps.iter().filter(|&&s| s > 0).count().max(1);

    let out = decoder.forward_masked(features, tokens.clone().narrow(1, 0, width), &steps);
    let [_, _, positions] = out.alphas.dims();
    let vocab = out.logits.dims()[1];
    // Past a caption's end its targets are <pad>: a valid index, masked out below.
    let targets = tokens.narrow(1, 1, width);
    let picked = log_softmax(out.logits.clone(), 1)
        .gather(1, targets.clone().reshape([batch_size * width, 1]))
        .reshape([batch_size, width]);
    let mask = step_mask::<B>(&steps, width, &device);
    let cross_entropy = (picked * mask.clone()).sum().div_scalar(words as f32).neg();

    // Padding rows (no step) attend nowhere; they are left out of the regulariser.
    let real_rows = mask.narrow(1, 0, 1).unsqueeze_dim::<3>(2);
    let attention_total = out.alphas.clone().sum_dim(1);
    let regularization = ((attention_total.neg() + 1.0).powi_scalar(2) * real_rows)
        .sum()
        .div_scalar((captions * positions) as f32)
        .mul_scalar(attention_regularization);

    CaptionerOutput {
        loss: cross_entropy.clone() + regularization,
        cross_entropy,
        logits: out.logits.reshape([batch_size, width, vocab]),
        targets,
        alphas: out.alphas,
    }
}

/// [`teacher_forced_loss`] decoding only the captions still running at each step, longest
/// first (shapes follow the data).
fn packed_loss<B: Backend>(
    decoder: &Decoder<B>,
    attention_regularization: f32,
    features: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    lengths: &[usize],
) -> CaptionerOutput<B> {
    let [batch_size, len] = tokens.dims();
    assert_eq!(lengths.len(), batch_size, "one length per caption");
    let width = len - 1;
    let device = tokens.device();
    let mut order: Vec<usize> = (0..batch_size).collect();
    order.sort_by_key(|&row| std::cmp::Reverse(lengths[row]));
    let (features, tokens) = if order.iter().enumerate().all(|(i, &row)| i == row) {
        (features, tokens)
    } else {
        let rows = index_tensor::<B>(&order, &device);
        (features.select(0, rows.clone()), tokens.select(0, rows))
    };
    let steps: Vec<usize> = order
        .iter()
        .map(|&row| lengths[row].saturating_sub(1).min(width))
        .collect();

    let inputs = tokens.clone().narrow(1, 0, width);
    let out = decoder.forward(features, inputs, &steps);
    let packed = packed_positions(&steps, width);
    let targets = tokens
        .narrow(1, 1, width)
        .reshape([batch_size * width])
        .select(0, index_tensor::<B>(&packed, &device));
    let picked = log_softmax(out.logits.clone(), 1)
        .gather(1, targets.clone().unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1);
    let cross_entropy = picked.mean().neg();

    let [_, _, positions] = out.alphas.dims();
    let attention_total = out.alphas.clone().sum_dim(1);
    let regularization = (attention_total.neg() + 1.0)
        .powi_scalar(2)
        .sum()
        .div_scalar((batch_size * positions) as f32)
        .mul_scalar(attention_regularization);

    CaptionerOutput {
        loss: cross_entropy.clone() + regularization,
        cross_entropy,
        logits: out.logits.unsqueeze_dim(0),
        targets: targets.unsqueeze_dim(0),
        alphas: out.alphas,
    }
}

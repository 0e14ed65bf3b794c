//! The whole captioner: encoder + attention decoder, its training loss and its captions.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::decode::Resize;

use crate::activation::log_softmax_rows;
use crate::batch::{CaptionBatch, EncoderInput};
use crate::decoder::{packed_positions, step_mask, Decoder, DecoderConfig};
use crate::encoder::{Encoder, EncoderConfig};
use crate::rows::{index_tensor, Shapes};
use crate::search::{sample_rows, search_rows, Caption, Endings, SearchConfig};
use crate::self_critical::{
    advantages, caption_tokens, mean, SelfCriticalRequest, SelfCriticalStats,
};

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
    pub fn caption(
        &self,
        images: Tensor<B, 4>,
        search: &SearchConfig,
        endings: &Endings,
    ) -> Vec<Caption> {
        self.caption_features(
            self.encoder.forward(images),
            search,
            endings,
            Shapes::Packed,
            0,
        )
    }

    /// Captions every grid of `features` (`[n, positions, channels]`) with `shapes`; under
    /// [`Shapes::Fixed`], in searches of `rows` decoder rows ([`search_rows`]).
    pub fn caption_features(
        &self,
        features: Tensor<B, 3>,
        search: &SearchConfig,
        endings: &Endings,
        shapes: Shapes,
        rows: usize,
    ) -> Vec<Caption> {
        let all: Vec<usize> = (0..features.dims()[0]).collect();
        search_rows(&self.decoder, features, &all, search, endings, shapes, rows)
    }

    /// Captions the grids of `features` at rows `picks`, in that order (see
    /// [`search_rows`]).
    pub fn caption_rows(
        &self,
        features: Tensor<B, 3>,
        picks: &[usize],
        search: &SearchConfig,
        endings: &Endings,
        shapes: Shapes,
        rows: usize,
    ) -> Vec<Caption> {
        search_rows(
            &self.decoder,
            features,
            picks,
            search,
            endings,
            shapes,
            rows,
        )
    }
}

impl<B: AutodiffBackend> Captioner<B> {
    /// One self-critical step on the grids `features` `[images, positions, channels]` (the
    /// first `request.image_ids.len()` rows are the batch's images; under [`Shapes::Fixed`]
    /// more may follow as padding, and the greedy search runs in groups of `rows` rows): the
    /// loss to step on, and what the step saw.
    pub fn self_critical(
        &self,
        features: Tensor<B, 3>,
        request: &SelfCriticalRequest,
        shapes: Shapes,
        rows: usize,
    ) -> (CaptionerOutput<B>, SelfCriticalStats) {
        let config = request.config;
        let k = config.samples;
        let images = request.image_ids.len();
        let device = features.device();
        let picks: Vec<usize> = (0..images).collect();

        // Sampled and searched without a gradient, on the model's inner backend.
        let model = self.valid();
        let grids = features.clone().inner();
        let samples = sample_rows(
            &model.decoder,
            grids.clone(),
            &picks,
            k,
            config.max_len,
            &request.endings,
            request.seed,
            shapes,
        );
        let greedy_search = SearchConfig {
            beam_size: 1,
            max_len: config.max_len,
            length_penalty: 0.0,
        };
        let greedy = search_rows(
            &model.decoder,
            grids,
            &picks,
            &greedy_search,
            &request.endings,
            shapes,
            rows,
        );

        let sample_images: Vec<usize> = request
            .image_ids
            .iter()
            .flat_map(|&id| std::iter::repeat_n(id, k))
            .collect();
        let sampled: Vec<&[u32]> = samples.iter().map(|c| c.tokens.as_slice()).collect();
        let rewards = request.reward.rewards(&sample_images, &sampled);
        let greedy_tokens: Vec<&[u32]> = greedy.iter().map(|c| c.tokens.as_slice()).collect();
        let greedy_rewards = request.reward.rewards(&request.image_ids, &greedy_tokens);
        let weights: Vec<f32> = advantages(&rewards, k, config.baseline, &greedy_rewards)
            .into_iter()
            .map(|a| a as f32)
            .collect();

        let (tokens, lengths) = caption_tokens::<B>(&samples, shapes, &device);
        let rows_of_samples: Vec<usize> = picks
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i, k))
            .collect();
        let grids = features.select(0, index_tensor(&rows_of_samples, &device));
        let out =
            weighted_log_likelihood_loss(&self.decoder, grids, tokens, &lengths, &weights, shapes);
        let stats = SelfCriticalStats {
            samples: samples.len(),
            mean_reward: mean(rewards.iter().copied()),
            greedy_reward: mean(greedy_rewards.iter().copied()),
            mean_length: mean(samples.iter().map(|c| c.tokens.len() as f64)),
        };
        (out, stats)
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
    let loss = Loss {
        attention_regularization,
        weights: None,
    };
    match shapes {
        Shapes::Packed => packed_loss(decoder, loss, features, tokens, lengths),
        Shapes::Fixed => masked_loss(decoder, loss, features, tokens, lengths),
    }
}

/// The policy-gradient loss of self-critical training, `-sum_i w_i sum_t log p(w_it) / words`
/// over captions `i` of `tokens` (laid out as for [`teacher_forced_loss`], with their own
/// grids `features`) and their words `t` (`<end>` included when the caption has it), each
/// caption weighted by `weights[i]` (its reward minus its baseline); `words` is the number of
/// words in all, as self-critical.pytorch's `RewardCriterion` normalises. With every weight 1
/// this is the cross-entropy of [`teacher_forced_loss`] without the attention term.
pub fn weighted_log_likelihood_loss<B: Backend>(
    decoder: &Decoder<B>,
    features: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    lengths: &[usize],
    weights: &[f32],
    shapes: Shapes,
) -> CaptionerOutput<B> {
    assert_eq!(weights.len(), lengths.len(), "one weight per caption");
    let loss = Loss {
        attention_regularization: 0.0,
        weights: Some(weights),
    };
    match shapes {
        Shapes::Packed => packed_loss(decoder, loss, features, tokens, lengths),
        Shapes::Fixed => masked_loss(decoder, loss, features, tokens, lengths),
    }
}

/// What the two layouts' losses weigh: the attention term, and each caption's log-likelihood
/// (`None`: 1 each, the cross-entropy).
#[derive(Clone, Copy)]
struct Loss<'a> {
    attention_regularization: f32,
    weights: Option<&'a [f32]>,
}

/// [`teacher_forced_loss`] with every step of every row decoded and the steps past each
/// caption's end masked out (fixed shapes).
fn masked_loss<B: Backend>(
    decoder: &Decoder<B>,
    loss: Loss,
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
    let picked = log_softmax_rows(out.logits.clone())
        .gather(1, targets.clone().reshape([batch_size * width, 1]))
        .reshape([batch_size, width]);
    let mask = step_mask::<B>(&steps, width, &device);
    let word_weights = match loss.weights {
        None => mask.clone(),
        Some(weights) => {
            let rows = TensorData::new(weights.to_vec(), [batch_size, 1]);
            let rows = Tensor::<B, 2>::from_data(rows, &device);
            mask.clone() * rows
        }
    };
    let cross_entropy = (picked * word_weights).sum().div_scalar(words as f32).neg();

    let total = if loss.attention_regularization == 0.0 {
        cross_entropy.clone()
    } else {
        // Padding rows (no step) attend nowhere; they are left out of the regulariser.
        let real_rows = mask.narrow(1, 0, 1).unsqueeze_dim::<3>(2);
        let attention_total = out.alphas.clone().sum_dim(1);
        let regularization = ((attention_total.neg() + 1.0).powi_scalar(2) * real_rows)
            .sum()
            .div_scalar((captions * positions) as f32)
            .mul_scalar(loss.attention_regularization);
        cross_entropy.clone() + regularization
    };

    CaptionerOutput {
        loss: total,
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
    loss: Loss,
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
    let picked = log_softmax_rows(out.logits.clone())
        .gather(1, targets.clone().unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1);
    let cross_entropy = match loss.weights {
        None => picked.mean().neg(),
        Some(weights) => {
            // The weight of each packed word is its caption's (`order[row]`, row = pos / width).
            let per_word: Vec<f32> = packed.iter().map(|p| weights[order[p / width]]).collect();
            let words = per_word.len().max(1);
            let per_word = TensorData::new(per_word, [packed.len()]);
            (picked * Tensor::<B, 1>::from_data(per_word, &device))
                .sum()
                .div_scalar(words as f32)
                .neg()
        }
    };

    let total = if loss.attention_regularization == 0.0 {
        cross_entropy.clone()
    } else {
        let [_, _, positions] = out.alphas.dims();
        let attention_total = out.alphas.clone().sum_dim(1);
        let regularization = (attention_total.neg() + 1.0)
            .powi_scalar(2)
            .sum()
            .div_scalar((batch_size * positions) as f32)
            .mul_scalar(loss.attention_regularization);
        cross_entropy.clone() + regularization
    };

    CaptionerOutput {
        loss: total,
        cross_entropy,
        logits: out.logits.unsqueeze_dim(0),
        targets: targets.unsqueeze_dim(0),
        alphas: out.alphas,
    }
}

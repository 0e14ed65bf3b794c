//! Self-critical sequence training (Rennie et al. 2017, "Self-critical Sequence Training for
//! Image Captioning"): the captioner is trained on its own captions, rewarded by the score
//! that evaluation reports (CIDEr-D), rather than on the reference words.
//!
//! For each image of a batch, `samples` captions are drawn from the model's distribution
//! (`search::sample_rows`; never finished right after a word such as "a", see
//! `search::Endings`) and each is rewarded against the image's references (the
//! [`CaptionReward`] the batch carries). A sample's advantage is its reward minus a baseline:
//! by default the mean reward of the image's *other* samples (the "new self-critical"
//! variant of self-critical.pytorch), or the reward of the greedy caption (the paper's). The
//! loss is `-sum_i advantage_i * log p(sample_i) / words` (`captioner::weighted_log_likelihood_loss`):
//! samples better than the baseline are made more likely, worse ones less.
//!
//! This module holds the pieces; the step itself is `Captioner::self_critical`.
//!
//! The samples are drawn without a gradient (on the model's inner backend), and their
//! log-probabilities are recomputed with one teacher-forced pass over them, the same pass as
//! cross-entropy training, so that a step costs a sampling pass plus a training pass. The
//! two passes agree only when the decoder has no dropout, which is why the self-critical stage
//! trains with dropout 0 (see `training::config::TrainConfig::self_critical_stage`).

use std::fmt;
use std::sync::Arc;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rows::{bucket_steps, Shapes};
use crate::search::{Caption, Endings};
use crate::tokens::{END, PAD, START};
use crate::SettingsError;

/// What a sample's reward is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// The mean reward of the same image's other samples (no extra decoding; needs at least
    /// two samples an image).
    #[default]
    Mean,
    /// The reward of the image's greedy caption (the paper's baseline).
    Greedy,
}

captioner_datasets::named_values!(Baseline: Mean = "mean", Greedy = "greedy");

/// What a sampled caption earns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reward {
    /// Its CIDEr-D against the image's references.
    #[default]
    Cider,
    /// Its CIDEr-D, and nothing when it is not a whole sentence: when it stops on two words
    /// that end none of the training captions ("on a dirt", "in a yellow": a phrase cut short)
    /// or says a two-word phrase twice ("a dog is playing with a dog"). CIDEr-D pays for the
    /// n-grams of a phrase cut short almost as for the whole phrase, so self-critical training
    /// otherwise learns to stop mid-phrase.
    WholeSentences,
}

captioner_datasets::named_values!(Reward: Cider = "cider", WholeSentences = "whole-sentences");

/// How a self-critical step samples and rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCriticalConfig {
    /// Captions drawn per image.
    pub samples: usize,
    /// What each sample's reward is compared with.
    pub baseline: Baseline,
    /// Most words in a sample (`<end>` not counted); a sample that reaches it is cut there.
    pub max_len: usize,
    /// What a sample earns (runs written before this setting earned CIDEr-D).
    #[serde(default)]
    pub reward: Reward,
}

impl Default for SelfCriticalConfig {
    fn default() -> Self {
        Self {
            samples: 5,
            baseline: Baseline::Mean,
            max_len: 20,
            reward: Reward::Cider,
        }
    }
}

impl SelfCriticalConfig {
    /// Refuses settings that cannot train.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.samples == 0 || self.max_len == 0 {
            return Err(SettingsError(
                "samples and max_len must be at least 1".into(),
            ));
        }
        if self.baseline == Baseline::Mean && self.samples < 2 {
            return Err(SettingsError(format!(
                "the mean baseline compares each sample with the image's other samples: it \
                 needs at least 2 samples an image ({} given), or the greedy baseline",
                self.samples
            )));
        }
        Ok(())
    }
}

/// Scores captions of training images; self-critical training maximises it.
pub trait CaptionReward: Send + Sync {
    /// The reward of `captions[i]` (word ids, without `<start>` and `<end>`) as a caption of
    /// the training image `images[i]` (its id in the training set).
    fn rewards(&self, images: &[usize], captions: &[&[u32]]) -> Vec<f64>;
}

/// What a batch asks of a self-critical step.
#[derive(Clone)]
pub struct SelfCriticalRequest {
    /// The training-set ids of the batch's images, in the order of its grids.
    pub image_ids: Vec<usize>,
    /// Samples, baseline and length cap.
    pub config: SelfCriticalConfig,
    /// Seed of this batch's draws.
    pub seed: u64,
    /// The words the samples and the greedy captions may not end on.
    pub endings: Arc<Endings>,
    /// Scores the samples.
    pub reward: Arc<dyn CaptionReward>,
}

impl fmt::Debug for SelfCriticalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfCriticalRequest")
            .field("image_ids", &self.image_ids)
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// What a self-critical step saw, for the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfCriticalStats {
    /// Captions sampled.
    pub samples: usize,
    /// Their mean reward.
    pub mean_reward: f64,
    /// The mean reward of the images' greedy captions (what validation's search is close to).
    pub greedy_reward: f64,
    /// The mean number of words of the samples.
    pub mean_length: f64,
}

/// Each sample's advantage: its reward minus its baseline. `rewards` holds `samples` rewards
/// per image, the samples of an image together; `greedy` one reward per image (read only for
/// [`Baseline::Greedy`]). The mean baseline of a sample leaves the sample itself out.
///
/// # Panics
/// If `rewards` is not a whole number of images' samples, or the mean baseline has fewer than
/// two samples an image.
pub fn advantages(rewards: &[f64], samples: usize, baseline: Baseline, greedy: &[f64]) -> Vec<f64> {
    assert!(
        samples > 0 && rewards.len().is_multiple_of(samples),
        "{samples} samples per image"
    );
    rewards
        .chunks(samples)
        .enumerate()
        .flat_map(|(image, own)| {
            let sum: f64 = own.iter().sum();
            own.iter().map(move |&r| match baseline {
                Baseline::Mean => {
                    assert!(samples > 1, "the mean baseline needs two samples an image");
                    r - (sum - r) / (samples - 1) as f64
                }
                Baseline::Greedy => r - greedy[image],
            })
        })
        .collect()
}

/// Lays `captions` out as teacher-forced rows, `<start> w1 .. wn <end>` (no `<end>` for a
/// caption cut at the length cap) padded with `<pad>`; returns the tokens `[captions, width]`
/// and each row's length. Under [`Shapes::Fixed`] the width is bucketed as the batcher's is.
pub fn caption_tokens<B: Backend>(
    captions: &[Caption],
    shapes: Shapes,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Vec<usize>) {
    let lengths: Vec<usize> = captions
        .iter()
        .map(|c| c.tokens.len() + 1 + usize::from(c.finished))
        .collect();
    let longest = lengths.iter().copied().max().unwrap_or(2).max(2);
    let width = match shapes {
        Shapes::Packed => longest,
        Shapes::Fixed => bucket_steps(longest - 1) + 1,
    };
    let mut tokens = vec![PAD as i64; captions.len() * width];
    for (row, caption) in captions.iter().enumerate() {
        let words = std::iter::once(START)
            .chain(caption.tokens.iter().copied())
            .chain(caption.finished.then_some(END));
        for (col, t) in words.enumerate() {
            tokens[row * width + col] = i64::from(t);
        }
    }
    let data = TensorData::new(tokens, [captions.len(), width]);
    (Tensor::from_data(data, device), lengths)
}

/// The mean of `values` (0 for none).
pub fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len().max(1);
    values.sum::<f64>() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};

    use crate::backbone::BackboneConfig;
    use crate::captioner::{weighted_log_likelihood_loss, CaptionerConfig};
    use crate::decoder::{Decoder, DecoderConfig};
    use crate::encoder::EncoderConfig;
    use crate::small_cnn::SmallCnnConfig;
    use crate::test_random::{redrawn, unit};

    type Train = Autodiff<NdArray>;

    const VOCAB: usize = 12;

    /// A small decoder and one image's grid of 4 positions.
    fn decoder_and_grid() -> (Decoder<Train>, Tensor<Train, 3>) {
        let device = Default::default();
        let decoder = DecoderConfig::new(VOCAB, 8)
            .with_embed_dim(8)
            .with_attention_dim(8)
            .with_hidden_dim(16)
            .with_dropout(0.0)
            .init(&device);
        (redrawn(decoder, 3), unit([1, 4, 8], 4, &device))
    }

    fn caption(words: &[u32]) -> Caption {
        Caption {
            tokens: words.to_vec(),
            finished: true,
            ..Caption::default()
        }
    }

    /// The log-probability of each caption (its words and `<end>`) on `grid`.
    fn log_probs(
        decoder: &Decoder<Train>,
        grid: &Tensor<Train, 3>,
        captions: &[Caption],
    ) -> Vec<f32> {
        captions
            .iter()
            .map(|c| {
                let (tokens, lengths) = caption_tokens::<Train>(
                    std::slice::from_ref(c),
                    Shapes::Packed,
                    &grid.device(),
                );
                let words = (lengths[0] - 1) as f32;
                let out = weighted_log_likelihood_loss(
                    decoder,
                    grid.clone(),
                    tokens,
                    &lengths,
                    &[1.0],
                    Shapes::Packed,
                );
                -out.loss.into_scalar() * words
            })
            .collect()
    }

    /// One SGD step of the self-critical loss of `samples` of the image, rewarded `rewards`,
    /// with the mean baseline.
    fn sgd_step(
        decoder: Decoder<Train>,
        grid: &Tensor<Train, 3>,
        samples: &[Caption],
        rewards: &[f64],
    ) -> Decoder<Train> {
        let weights: Vec<f32> = advantages(rewards, samples.len(), Baseline::Mean, &[])
            .into_iter()
            .map(|a| a as f32)
            .collect();
        let device = grid.device();
        let (tokens, lengths) = caption_tokens::<Train>(samples, Shapes::Packed, &device);
        let grids = grid.clone().repeat_dim(0, samples.len());
        let out = weighted_log_likelihood_loss(
            &decoder,
            grids,
            tokens,
            &lengths,
            &weights,
            Shapes::Packed,
        );
        let grads = GradientsParams::from_grads(out.loss.backward(), &decoder);
        SgdConfig::new().init().step(0.1, decoder, grads)
    }

    #[test]
    fn a_sample_above_the_baseline_becomes_likelier_and_one_below_less_likely() {
        let (decoder, grid) = decoder_and_grid();
        let samples = [caption(&[5, 6]), caption(&[7, 8, 9])];
        let before = log_probs(&decoder, &grid, &samples);
        // Rewards 1 and 0: advantages +1 and -1 (each against the other).
        let decoder = sgd_step(decoder, &grid, &samples, &[1.0, 0.0]);
        let after = log_probs(&decoder, &grid, &samples);
        assert!(after[0] > before[0], "{before:?} -> {after:?}");
        assert!(after[1] < before[1], "{before:?} -> {after:?}");
    }

    #[test]
    fn identical_samples_have_equal_rewards_and_move_nothing() {
        let (decoder, grid) = decoder_and_grid();
        let samples = [caption(&[5, 6]), caption(&[5, 6]), caption(&[5, 6])];
        let probe = [caption(&[5, 6]), caption(&[7, 8, 9])];
        let before = log_probs(&decoder, &grid, &probe);
        let decoder = sgd_step(decoder, &grid, &samples, &[0.7, 0.7, 0.7]);
        assert_eq!(
            log_probs(&decoder, &grid, &probe),
            before,
            "a zero gradient"
        );
    }

    #[test]
    fn samples_are_laid_out_as_teacher_forced_rows_with_end_only_when_finished() {
        let cut = Caption {
            finished: false,
            ..caption(&[4, 4, 4])
        };
        let (tokens, lengths) =
            caption_tokens::<NdArray>(&[caption(&[5]), cut], Shapes::Packed, &Default::default());
        assert_eq!(lengths, [3, 4]);
        let tokens: Vec<i64> = tokens.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(tokens, [1, 5, 2, 0, 1, 4, 4, 4]);
    }

    /// The share of a caption's words that are word 5.
    struct FivesReward;

    impl CaptionReward for FivesReward {
        fn rewards(&self, _: &[usize], captions: &[&[u32]]) -> Vec<f64> {
            captions
                .iter()
                .map(|c| c.iter().filter(|&&w| w == 5).count() as f64 / c.len().max(1) as f64)
                .collect()
        }
    }

    #[test]
    fn self_critical_steps_raise_the_reward_of_the_samples() {
        let device = Default::default();
        let encoder = SmallCnnConfig::new().with_image_size(16);
        let decoder = DecoderConfig::new(VOCAB, encoder.feature_dim())
            .with_embed_dim(16)
            .with_attention_dim(16)
            .with_hidden_dim(32)
            .with_dropout(0.0);
        let config = CaptionerConfig::new(EncoderConfig::SmallCnn(encoder), decoder);
        let mut model = config.init::<Train>(&device);
        model.decoder = redrawn(model.decoder, 11);
        let grids = unit([2, 4, config.decoder.feature_dim], 12, &device);
        let mut optimizer = AdamConfig::new().init();
        let mut rewards = Vec::new();
        for step in 0..40 {
            let request = SelfCriticalRequest {
                image_ids: vec![0, 1],
                config: SelfCriticalConfig {
                    samples: 4,
                    baseline: Baseline::Mean,
                    max_len: 6,
                    reward: Reward::Cider,
                },
                seed: step,
                endings: Arc::new(Endings::any()),
                reward: Arc::new(FivesReward),
            };
            let (out, stats) = model.self_critical(grids.clone(), &request, Shapes::Packed, 0);
            assert_eq!(stats.samples, 8);
            rewards.push(stats.mean_reward);
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optimizer.step(1e-2, model, grads);
        }
        let first = rewards[..5].iter().sum::<f64>() / 5.0;
        let last = rewards[35..].iter().sum::<f64>() / 5.0;
        assert!(first < 0.3 && last > 0.6, "{rewards:?}");
    }

    #[test]
    fn the_mean_baseline_leaves_the_sample_itself_out() {
        // Two images of three samples.
        let a = advantages(&[1.0, 2.0, 3.0, 5.0, 5.0, 5.0], 3, Baseline::Mean, &[]);
        // 1 - (2 + 3) / 2, 2 - (1 + 3) / 2, 3 - (1 + 2) / 2.
        assert_eq!(&a[..3], &[-1.5, 0.0, 1.5]);
        assert_eq!(&a[3..], &[0.0, 0.0, 0.0], "identical rewards: no advantage");
        let g = advantages(&[1.0, 2.0, 3.0, 5.0], 2, Baseline::Greedy, &[1.5, 6.0]);
        assert_eq!(g, [-0.5, 0.5, -3.0, -1.0]);
    }

    #[test]
    fn a_mean_baseline_needs_two_samples() {
        let one = SelfCriticalConfig {
            samples: 1,
            ..Default::default()
        };
        assert!(one.check().unwrap_err().0.contains("at least 2 samples"));
        let greedy = SelfCriticalConfig {
            baseline: Baseline::Greedy,
            ..one
        };
        assert!(greedy.check().is_ok());
    }
}

//! The settings of a training run, saved as `config.json` in its folder.

use captioner_datasets::shapes::ShapesConfig;
use serde::{Deserialize, Serialize};

/// Everything that decides a run; the defaults train the shapes captioner in a few minutes on
/// two CPU cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training captions.
    pub epochs: usize,
    /// Captions per optimiser step.
    pub batch_size: usize,
    /// Adam learning rate at the start; it follows a cosine down to `lr / 20` at the last
    /// epoch.
    pub lr: f64,
    /// Seed of weight initialisation and shuffling.
    pub seed: u64,
    /// Gradients are clipped to `[-grad_clip, grad_clip]` element-wise.
    pub grad_clip: f32,
    /// Data-loading threads.
    pub workers: usize,
    /// Words seen fewer times in the training captions become `<unk>`.
    pub min_word_freq: usize,
    /// Width of the word embeddings.
    pub embed_dim: usize,
    /// Width of the attention space.
    pub attention_dim: usize,
    /// Width of the LSTM state.
    pub hidden_dim: usize,
    /// Dropout before the vocabulary projection.
    pub dropout: f64,
    /// Weight of the doubly stochastic attention regularisation.
    pub attention_regularization: f32,
    /// The embedded shapes dataset.
    pub shapes: ShapesConfig,
    /// Beam size of the final evaluation.
    pub beam_size: usize,
    /// Longest caption decoded, in words.
    pub max_caption_len: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 32,
            lr: 2e-3,
            seed: 42,
            grad_clip: 5.0,
            workers: 2,
            min_word_freq: 1,
            embed_dim: 64,
            attention_dim: 32,
            hidden_dim: 128,
            dropout: 0.2,
            attention_regularization: 1.0,
            shapes: ShapesConfig::default(),
            beam_size: 3,
            max_caption_len: 20,
        }
    }
}

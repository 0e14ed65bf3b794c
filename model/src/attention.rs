//! Soft additive (Bahdanau) attention over the encoder's feature grid.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::activation::tanh_by_exp;
use crate::step_linear::StepLinear;

/// Sizes of an [`Attention`] layer.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Width of each encoder feature.
    pub feature_dim: usize,
    /// Width of the decoder's hidden state.
    pub hidden_dim: usize,
    /// Width of the attention space.
    pub attention_dim: usize,
}

/// `alpha = softmax_p(w . tanh(W_f f_p + W_h h))`, context `= sum_p alpha_p f_p`.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    feature_proj: Linear<B>,
    hidden_proj: Linear<B>,
    score: Linear<B>,
}

impl AttentionConfig {
    /// Builds the layer with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        Attention {
            feature_proj: LinearConfig::new(self.feature_dim, self.attention_dim).init(device),
            hidden_proj: LinearConfig::new(self.hidden_dim, self.attention_dim).init(device),
            score: LinearConfig::new(self.attention_dim, 1).init(device),
        }
    }
}

impl<B: Backend> Attention<B> {
    /// The encoder side of the scores, `[batch, positions, attention_dim]`: it does not depend
    /// on the decoding step, so callers compute it once per batch.
    pub fn project_features(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        self.feature_proj.forward(features)
    }

    /// The decoder side of the scores, laid out for stepping: pass it to every
    /// [`Attention::forward`] of a batch.
    pub fn query_layer(&self) -> StepLinear<B> {
        StepLinear::new(&self.hidden_proj)
    }

    /// One step: the context vector `[batch, feature_dim]` and the weights
    /// `[batch, positions]` (each row sums to 1) for decoder state `hidden` `[batch, hidden]`;
    /// `query` is this layer's [`Attention::query_layer`].
    pub fn forward(
        &self,
        features: &Tensor<B, 3>,
        projected: &Tensor<B, 3>,
        query: &StepLinear<B>,
        hidden: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [batch, positions, width] = projected.dims();
        // The query repeated over the positions, not broadcast: flex adds two contiguous
        // tensors in a vectorised loop but walks a broadcast one index by index (that add
        // was 12% of a decoder training step in the profile, bench/RESULTS.md).
        let query = query
            .forward(hidden)
            .unsqueeze_dim::<3>(1)
            .repeat_dim(1, positions);
        let energy = tanh_by_exp(projected.clone() + query);
        // One `[batch * positions, width] x [width, 1]` product rather than a batch of them.
        let scores = self
            .score
            .forward(energy.reshape([batch * positions, width]))
            .reshape([batch, positions]);
        let alpha = softmax(scores, 1);
        let context = alpha
            .clone()
            .unsqueeze_dim::<3>(1)
            .matmul(features.clone())
            .squeeze_dim::<2>(1);
        (context, alpha)
    }
}

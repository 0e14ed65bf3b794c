//! Soft additive (Bahdanau) attention over the encoder's feature grid.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

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

    /// One step: the context vector `[batch, feature_dim]` and the weights
    /// `[batch, positions]` (each row sums to 1) for decoder state `hidden` `[batch, hidden]`.
    pub fn forward(
        &self,
        features: &Tensor<B, 3>,
        projected: &Tensor<B, 3>,
        hidden: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let query = self.hidden_proj.forward(hidden).unsqueeze_dim::<3>(1);
        let energy = (projected.clone() + query).tanh();
        let scores = self.score.forward(energy).squeeze_dim::<2>(2);
        let alpha = softmax(scores, 1);
        let context = alpha
            .clone()
            .unsqueeze_dim::<3>(1)
            .matmul(features.clone())
            .squeeze_dim::<2>(1);
        (context, alpha)
    }
}

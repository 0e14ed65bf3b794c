//! Soft additive (Bahdanau) attention over the encoder's feature grid.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::activation::tanh_by_exp;
use crate::fused;
use crate::rows::linear_by_rows;
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
        linear_by_rows(&self.feature_proj, features)
    }

    /// The decoder side of the scores, laid out for stepping: pass it to every
    /// [`Attention::forward`] of a batch.
    pub fn query_layer(&self) -> StepLinear<B> {
        StepLinear::new(&self.hidden_proj)
    }

    /// One step: the context vector `[batch, feature_dim]` and the weights
    /// `[batch, positions]` (each row sums to 1) for decoder state `hidden` `[batch, hidden]`;
    /// `query` is this layer's [`Attention::query_layer`], and `gradients` where the steps of
    /// a pass sum the gradients of `features` and `projected` (one for all steps of a pass,
    /// like `query`).
    pub fn forward(
        &self,
        features: &Tensor<B, 3>,
        projected: &Tensor<B, 3>,
        query: &StepLinear<B>,
        gradients: &fused::AttendGradients,
        hidden: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let query = query.forward(hidden);
        // flex (and Autodiff<Flex>): the whole step in one pass, `fused/`.
        fused::attend(
            features,
            projected,
            &query,
            &self.score.weight.val(),
            gradients,
        )
        .unwrap_or_else(|| self.forward_by_tensor_ops(features, projected, query))
    }

    /// [`Attention::forward`] as Burn tensor operations, given the decoder side `query`
    /// `[batch, attention_dim]`: what every backend but flex runs, and the reference that
    /// the fused kernel is tested against.
    pub fn forward_by_tensor_ops(
        &self,
        features: &Tensor<B, 3>,
        projected: &Tensor<B, 3>,
        query: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [batch, positions, width] = projected.dims();
        // The query repeated over the positions, not broadcast: flex adds two contiguous
        // tensors in a vectorised loop but walks a broadcast one index by index (that add
        // was 12% of a decoder training step in the profile, bench/RESULTS.md).
        let query = query.unsqueeze_dim::<3>(1).repeat_dim(1, positions);
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn backends_without_a_fused_kernel_take_the_tensor_operations() {
        let device = Default::default();
        let features = Tensor::<NdArray, 3>::zeros([2, 3, 4], &device);
        let projected = Tensor::<NdArray, 3>::zeros([2, 3, 5], &device);
        let query = Tensor::<NdArray, 2>::zeros([2, 5], &device);
        let score = Tensor::<NdArray, 2>::zeros([5, 1], &device);
        let gradients = Default::default();
        assert!(fused::attend(&features, &projected, &query, &score, &gradients).is_none());
    }

    #[cfg(feature = "flex")]
    #[test]
    fn the_fused_step_on_flex_gives_the_outputs_and_gradients_of_the_tensor_operations() {
        use crate::fused::relative_gap;
        use burn::backend::{Autodiff, Flex};
        use burn::module::AutodiffModule;
        use burn::tensor::Distribution;
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        // Widths that are not multiples of the kernels' 16 lanes, and the preset's own.
        for (n, positions, feature_dim, hidden_dim, attention_dim) in [
            (3, 5, 11, 7, 19),
            (8, 49, 40, 24, 64),
            (4, 49, 1280, 512, 512),
        ] {
            Ad::seed(&device, 7);
            let attention =
                AttentionConfig::new(feature_dim, hidden_dim, attention_dim).init::<Ad>(&device);
            let features = Tensor::<Ad, 3>::random(
                [n, positions, feature_dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
            .require_grad();
            let hidden =
                Tensor::<Ad, 2>::random([n, hidden_dim], Distribution::Normal(0.0, 1.0), &device)
                    .require_grad();
            let weigh_context =
                Tensor::<Ad, 2>::random([n, feature_dim], Distribution::Normal(0.0, 1.0), &device);
            let weigh_alpha =
                Tensor::<Ad, 2>::random([n, positions], Distribution::Normal(0.0, 1.0), &device);
            let run = |use_fused: bool| {
                let projected = attention.project_features(features.clone());
                let (context, alpha) = if use_fused {
                    attention.forward(
                        &features,
                        &projected,
                        &attention.query_layer(),
                        &Default::default(),
                        hidden.clone(),
                    )
                } else {
                    let query = attention.query_layer().forward(hidden.clone());
                    attention.forward_by_tensor_ops(&features, &projected, query)
                };
                let loss = (context.clone() * weigh_context.clone()).sum()
                    + (alpha.clone() * weigh_alpha.clone()).sum();
                let grads = loss.backward();
                let grad = |t: &Tensor<Ad, 2>| t.grad(&grads).unwrap();
                (
                    context.inner(),
                    alpha.inner(),
                    features.grad(&grads).unwrap(),
                    grad(&hidden),
                    attention.feature_proj.weight.grad(&grads).unwrap(),
                    attention
                        .feature_proj
                        .bias
                        .as_ref()
                        .unwrap()
                        .grad(&grads)
                        .unwrap(),
                    attention.hidden_proj.weight.grad(&grads).unwrap(),
                    attention.score.weight.grad(&grads).unwrap(),
                    attention.score.bias.as_ref().unwrap().grad(&grads),
                )
            };
            let ours = run(true);
            let reference = run(false);
            let sizes = format!("n {n}, positions {positions}, attention {attention_dim}");
            let checks = [
                ("context", relative_gap(ours.0, reference.0)),
                ("alpha", relative_gap(ours.1, reference.1)),
                ("d features", relative_gap(ours.2, reference.2)),
                ("d hidden", relative_gap(ours.3, reference.3)),
                ("d feature_proj.weight", relative_gap(ours.4, reference.4)),
                ("d feature_proj.bias", relative_gap(ours.5, reference.5)),
                ("d hidden_proj.weight", relative_gap(ours.6, reference.6)),
                ("d score.weight", relative_gap(ours.7, reference.7)),
            ];
            for (what, gap) in checks {
                assert!(
                    gap < 2e-5,
                    "{what} differs by {gap} of its largest value ({sizes})"
                );
            }
            // The bias shifts every score alike, which softmax undoes: the fused step leaves
            // it without a gradient, and the tensor operations give it rounding noise.
            assert!(ours.8.is_none(), "{sizes}");
            let noise: f32 = reference.8.unwrap().abs().max().into_scalar();
            assert!(noise < 1e-4, "{sizes}: {noise}");

            // Inference (flex without autodiff) gives the same values.
            let inner = attention.valid();
            let (features, hidden) = (features.clone().inner(), hidden.clone().inner());
            let projected = inner.project_features(features.clone());
            let gradients = Default::default();
            let query_layer = inner.query_layer();
            let (context, alpha) = inner.forward(
                &features,
                &projected,
                &query_layer,
                &gradients,
                hidden.clone(),
            );
            let query = query_layer.forward(hidden);
            let weight = inner.score.weight.val();
            assert!(fused::attend(&features, &projected, &query, &weight, &gradients).is_some());
            let (context_ref, alpha_ref) =
                inner.forward_by_tensor_ops(&features, &projected, query);
            assert!(relative_gap(context, context_ref) < 2e-5, "{sizes}");
            assert!(relative_gap(alpha, alpha_ref) < 2e-5, "{sizes}");
        }
    }
}

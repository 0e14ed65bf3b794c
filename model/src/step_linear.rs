//! `Linear` layers applied at every decoding step, with their weight laid out for the step's
//! thin product.

use burn::nn::Linear;
use burn::prelude::*;

/// A `Linear` for inference whose weight is copied once (per search) to `[d_output,
/// d_input]`, the layout PyTorch keeps, and used transposed at each step. Burn's `Linear`
/// stores `[d_input, d_output]`; for a beam search step's `[96, 1792] x [1792, 2048]` the CPU
/// gemm runs at about 105 GFLOP/s here with that layout, 205 with this one
/// (`bench/examples/matmul.rs`).
///
/// While training (the weight requires a gradient) the layer keeps Burn's layout: the
/// backward pass would then multiply by the copy in the slow layout and add up transposed
/// per-step gradients, which halved the speed of a decoder training step.
#[derive(Debug, Clone)]
pub struct StepLinear<B: Backend> {
    /// `[d_output, d_input]` when `transposed`, else `[d_input, d_output]`.
    weight: Tensor<B, 2>,
    transposed: bool,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> StepLinear<B> {
    /// Lays out `linear`'s weight for stepping (a copy when it is not being trained).
    pub fn new(linear: &Linear<B>) -> Self {
        let weight = linear.weight.val();
        let bias = linear.bias.as_ref().map(|bias| bias.val());
        if weight.is_require_grad() {
            return Self {
                weight,
                transposed: false,
                bias,
            };
        }
        let [d_input, d_output] = weight.dims();
        // `reshape` of the transposed view copies it into the new layout.
        let weight = weight
            .transpose()
            .reshape([d_output * d_input])
            .reshape([d_output, d_input]);
        Self {
            weight,
            transposed: true,
            bias,
        }
    }

    /// `linear.forward(x)` for `x` `[rows, d_input]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let weight = if self.transposed {
            self.weight.clone().transpose()
        } else {
            self.weight.clone()
        };
        let y = x.matmul(weight);
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze_dim(0),
            None => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::AutodiffModule;
    use burn::nn::LinearConfig;

    type Ad = Autodiff<NdArray>;

    fn values<const D: usize>(x: Tensor<NdArray, D>) -> Vec<f32> {
        x.into_data().to_vec().unwrap()
    }

    #[test]
    fn equals_the_linear_layer_in_inference_and_in_training() {
        let device = Default::default();
        let linear = LinearConfig::new(3, 2).init::<Ad>(&device);
        let x = Tensor::<Ad, 2>::from_floats([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], &device);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-6);

        let inference = linear.valid();
        let step = StepLinear::new(&inference);
        assert!(step.transposed);
        let ours = values(step.forward(x.clone().inner()));
        let expected = values(inference.forward(x.clone().inner()));
        assert!(close(&ours, &expected), "{ours:?} vs {expected:?}");

        let target = Tensor::<Ad, 2>::from_floats([[1.0, -2.0], [0.5, 0.0]], &device);
        let step = StepLinear::new(&linear);
        assert!(!step.transposed);
        let y = step.forward(x);
        let grads = (y.clone() * target).sum().backward();
        assert!(close(&values(y.inner()), &expected));
        assert!(linear.weight.val().grad(&grads).is_some());
    }
}

//! `Linear` layers applied at every decoding step, with their weight laid out for the step's
//! thin product.

use burn::nn::Linear;
use burn::prelude::*;

/// A `Linear` for inference that also keeps its weight copied once (per search) to
/// `[d_output, d_input]`, the layout PyTorch keeps, and used transposed. Burn's `Linear`
/// stores `[d_input, d_output]`. Which layout the CPU's gemm multiplies faster depends on the
/// number of rows: the copy for a batched beam search step (`[96, 1792] x [1792, 2048]`),
/// Burn's layout for a single picture's three beams (measured in bench/RESULTS.md). So steps
/// of at least [`StepLinear::WIDE_ROWS`] rows use the copy and thinner ones Burn's layout.
///
/// While training (the weight requires a gradient) the layer keeps Burn's layout only: the
/// backward pass would otherwise multiply by the copy in the slow layout and add up
/// transposed per-step gradients, which halved the speed of a decoder training step.
#[derive(Debug, Clone)]
pub struct StepLinear<B: Backend> {
    /// `[d_input, d_output]`.
    weight: Tensor<B, 2>,
    /// `[d_output, d_input]`, when not training.
    transposed: Option<Tensor<B, 2>>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> StepLinear<B> {
    /// Steps with at least this many rows multiply by the `[d_output, d_input]` copy.
    pub const WIDE_ROWS: usize = 16;

    /// Lays out `linear`'s weight for stepping (with a copy when it is not being trained).
    pub fn new(linear: &Linear<B>) -> Self {
        let weight = linear.weight.val();
        let bias = linear.bias.as_ref().map(|bias| bias.val());
        let transposed = (!weight.is_require_grad()).then(|| {
            let [d_input, d_output] = weight.dims();
            // `reshape` of the transposed view copies it into the new layout.
            weight
                .clone()
                .transpose()
                .reshape([d_output * d_input])
                .reshape([d_output, d_input])
        });
        Self {
            weight,
            transposed,
            bias,
        }
    }

    /// `linear.forward(x)` for `x` `[rows, d_input]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let weight = match &self.transposed {
            Some(copy) if x.dims()[0] >= Self::WIDE_ROWS => copy.clone().transpose(),
            _ => self.weight.clone(),
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
        assert!(step.transposed.is_some());
        let ours = values(step.forward(x.clone().inner()));
        let expected = values(inference.forward(x.clone().inner()));
        assert!(close(&ours, &expected), "{ours:?} vs {expected:?}");
        // Wide enough for the copy.
        let wide = x
            .clone()
            .inner()
            .repeat_dim(0, StepLinear::<NdArray>::WIDE_ROWS);
        let ours = values(step.forward(wide.clone()));
        let expected_wide = values(inference.forward(wide));
        assert!(
            close(&ours, &expected_wide),
            "{ours:?} vs {expected_wide:?}"
        );

        let target = Tensor::<Ad, 2>::from_floats([[1.0, -2.0], [0.5, 0.0]], &device);
        let step = StepLinear::new(&linear);
        assert!(step.transposed.is_none());
        let y = step.forward(x);
        let grads = (y.clone() * target).sum().backward();
        assert!(close(&values(y.inner()), &expected));
        assert!(linear.weight.val().grad(&grads).is_some());
    }
}

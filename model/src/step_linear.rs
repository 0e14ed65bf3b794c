//! `Linear` layers applied at every decoding step, with their weight laid out for the step's
//! thin product.

use std::sync::OnceLock;

use burn::nn::Linear;
use burn::prelude::*;

use crate::fused;

/// A `Linear` applied at every decoding step, with its weight laid out for the step's thin
/// product once (per batch or search, at the first step that needs it):
///
/// - **on flex** ([`fused::step_product`]), inference and training: packed into panels, by
///   which every step multiplies; in training also `W^T`'s panels for the backward's
///   `d x = d y W^T`.
/// - **inference elsewhere**: steps of at least [`StepLinear::WIDE_ROWS`] rows multiply by
///   a copy laid out `[d_output, d_input]` (the layout PyTorch keeps; Burn's `Linear` stores
///   `[d_input, d_output]`), used transposed, and thinner ones by Burn's layout.
/// - **training elsewhere**: Burn's layout only, through Burn's operations. (Multiplying by
///   the copy there would put the slow layout in the backward pass instead and add up
///   transposed per-step gradients, which halved the speed of a decoder training step.)
///
/// bench/RESULTS.md has the products' speeds in each layout.
#[derive(Debug, Clone)]
pub struct StepLinear<B: Backend> {
    /// `[d_input, d_output]`.
    weight: Tensor<B, 2>,
    /// `[d_output, d_input]`, a constant, made at the first step that reads it.
    transposed: OnceLock<Tensor<B, 2>>,
    /// The weight's panels on flex.
    packed: fused::PackedWeight,
    bias: Option<Tensor<B, 1>>,
    /// Whether the weight is being trained (it requires a gradient).
    training: bool,
}

impl<B: Backend> StepLinear<B> {
    /// Steps with at least this many rows multiply by the `[d_output, d_input]` copy in
    /// inference off flex.
    pub const WIDE_ROWS: usize = 16;

    /// Lays out `linear`'s weight for stepping.
    pub fn new(linear: &Linear<B>) -> Self {
        let weight = linear.weight.val();
        Self {
            training: weight.is_require_grad(),
            weight,
            transposed: OnceLock::new(),
            packed: fused::PackedWeight::default(),
            bias: linear.bias.as_ref().map(|bias| bias.val()),
        }
    }

    /// The `[d_output, d_input]` copy, made at the first call.
    fn transposed(&self) -> &Tensor<B, 2> {
        self.transposed.get_or_init(|| {
            let [d_input, d_output] = self.weight.dims();
            // `reshape` of the transposed view copies it into the new layout.
            self.weight
                .clone()
                .detach()
                .transpose()
                .reshape([d_output * d_input])
                .reshape([d_output, d_input])
        })
    }

    /// `linear.forward(x)` for `x` `[rows, d_input]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let bias = self.bias.as_ref();
        if let Some(y) = fused::step_product(&x, &self.weight, bias, &self.packed) {
            return y;
        }
        if self.training {
            return self.add_bias(x.matmul(self.weight.clone()));
        }
        let weight = if x.dims()[0] >= Self::WIDE_ROWS {
            self.transposed().clone().transpose()
        } else {
            self.weight.clone()
        };
        self.add_bias(x.matmul(weight))
    }

    fn add_bias(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
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
        let ours = values(step.forward(x.clone().inner()));
        let expected = values(inference.forward(x.clone().inner()));
        assert!(close(&ours, &expected), "{ours:?} vs {expected:?}");
        // Wide enough for the copy.
        let wide = x
            .clone()
            .inner()
            .repeat_dim(0, StepLinear::<NdArray>::WIDE_ROWS);
        let ours = values(step.forward(wide.clone()));
        assert!(
            step.transposed.get().is_some(),
            "a wide step reads the copy"
        );
        let expected_wide = values(inference.forward(wide));
        assert!(
            close(&ours, &expected_wide),
            "{ours:?} vs {expected_wide:?}"
        );

        let target = Tensor::<Ad, 2>::from_floats([[1.0, -2.0], [0.5, 0.0]], &device);
        let step = StepLinear::new(&linear);
        let y = step.forward(x);
        assert!(
            step.transposed.get().is_none(),
            "ndarray trains in Burn's layout"
        );
        let grads = (y.clone() * target).sum().backward();
        assert!(close(&values(y.inner()), &expected));
        assert!(linear.weight.val().grad(&grads).is_some());
    }

    #[cfg(feature = "flex")]
    #[test]
    fn on_flex_gives_the_outputs_and_gradients_of_the_linear_layer() {
        use burn::backend::Flex;
        use burn::tensor::Distribution;
        type AdFlex = Autodiff<Flex>;

        let device = Default::default();
        // Widths that are not multiples of gemm's blocks, and the preset's LSTM step.
        for (rows, d_input, d_output, with_bias) in [
            (3, 5, 7, true),
            (5, 33, 17, false),
            (32, 1792, 2048, false),
            (32, 512, 1280, true),
        ] {
            let linear = LinearConfig::new(d_input, d_output)
                .with_bias(with_bias)
                .init::<AdFlex>(&device);
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<AdFlex, 2>::random([rows, d_input], normal, &device).require_grad();
            let weigh = Tensor::<AdFlex, 2>::random([rows, d_output], normal, &device);
            let run = |y: Tensor<AdFlex, 2>| {
                let grads = (y.clone() * weigh.clone()).sum().backward();
                let bias = linear.bias.as_ref().map(|b| b.grad(&grads).unwrap());
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    linear.weight.grad(&grads).unwrap(),
                    bias,
                )
            };
            // The layer applied at three steps, to a third of the rows each, as a decoder
            // applies it: their `d W` are added into one sum.
            let step = StepLinear::new(&linear);
            let third = rows.div_ceil(3);
            let steps: Vec<_> = (0..rows)
                .step_by(third)
                .map(|first| step.forward(x.clone().narrow(0, first, third.min(rows - first))))
                .collect();
            let ours = run(Tensor::cat(steps, 0));
            assert!(step.packed.is_packed(), "flex multiplies by the panels");
            let reference = run(linear.forward(x.clone()));
            let sizes = format!("[{rows}, {d_input}] x [{d_input}, {d_output}]");
            let inference = linear.valid();
            let step = StepLinear::new(&inference);
            let ours_inferred = step.forward(x.clone().inner());
            assert!(step.packed.is_packed(), "flex multiplies by the panels");
            let gap = crate::fused::relative_gap(
                ours_inferred.clone(),
                inference.forward(x.clone().inner()),
            );
            assert!(gap < 1e-5, "inference {sizes}: relative gap {gap}");
            // Trained or not, the same products.
            assert_eq!(
                ours_inferred.into_data(),
                ours.0.clone().into_data(),
                "{sizes}"
            );
            crate::fused::assert_same_outputs_and_gradients(ours, reference, with_bias, &sizes);
        }
    }
}

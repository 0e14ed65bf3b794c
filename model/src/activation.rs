//! Activations computed through the operations that Burn's CPU backends vectorise.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid};

/// `tanh(x) = (exp(2x) - 1) / (exp(2x) + 1)`. Burn 0.21's CPU backends compute `tanh` one
/// element at a time with the C library (about 19 ns each here), but `exp`, additions and
/// divisions in vectorised loops: this form is 5 to 8 times faster (`cargo run --release -p
/// captioner-bench --bin elementwise`) on the attention's `[batch, positions,
/// attention]` energies, the decoder's hottest elementwise op, and within 3e-7 of `tanh`.
/// The clamp keeps `exp` finite, so that the gradient never meets `0 * inf`. The division
/// is a true one: ndarray's SIMD `recip()` is only good to about 1e-4, and only in the
/// vectorised body of a buffer, so with it the same value came out differently depending on
/// where it sat in the tensor (greedy and beam-1 decoding disagreed in the fifth digit).
pub fn tanh_by_exp<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let e = x.clamp(-15.0, 15.0).mul_scalar(2.0).exp();
    e.clone().sub_scalar(1.0) / e.add_scalar(1.0)
}

/// `x sigmoid(g)` element by element, `[n, width]` each: the fused kernel on flex
/// ([`crate::fused::gate`]), Burn's operations elsewhere.
pub fn gated<B: Backend>(x: Tensor<B, 2>, g: Tensor<B, 2>) -> Tensor<B, 2> {
    crate::fused::gate(&x, &g).unwrap_or_else(|| sigmoid(g) * x)
}

/// Log-softmax over each row of `x` `[n, width]`: the fused kernel on flex
/// ([`crate::fused::log_softmax`]), Burn's `log_softmax` elsewhere.
pub fn log_softmax_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    crate::fused::log_softmax(&x).unwrap_or_else(|| log_softmax(x, 1))
}

/// `x` clamped to `[lo, hi]` element by element: the fused kernel on flex in inference
/// ([`crate::fused::clamp`]), Burn's `clamp` elsewhere.
pub fn clamped<B: Backend, const D: usize>(x: Tensor<B, D>, lo: f32, hi: f32) -> Tensor<B, D> {
    crate::fused::clamp(x, lo, hi).unwrap_or_else(|x| x.clamp(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    #[test]
    fn tanh_by_exp_matches_tanh_and_its_gradient() {
        let device = Default::default();
        let values = [
            -40.0f32, -15.5, -3.0, -0.5, -1e-4, 0.0, 1e-4, 0.7, 2.0, 9.0, 40.0,
        ];
        let x = Tensor::<Autodiff<NdArray>, 1>::from_floats(values, &device).require_grad();
        let y = tanh_by_exp(x.clone());
        let grads = y.clone().sum().backward();
        let y: Vec<f32> = y.into_data().to_vec().unwrap();
        let dy: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
        for ((v, y), dy) in values.iter().zip(y).zip(dy) {
            let t = v.tanh();
            assert!((y - t).abs() < 3e-7, "tanh({v}) = {t}, got {y}");
            let expected = if v.abs() > 15.0 { 0.0 } else { 1.0 - t * t };
            assert!(
                (dy - expected).abs() < 1e-6,
                "tanh'({v}) = {expected}, got {dy}"
            );
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn on_flex_the_fused_log_softmax_gives_the_values_and_gradients_of_the_tensor_operations() {
        use crate::fused::{self, relative_gap};
        use crate::test_random::unit;
        use burn::backend::Flex;
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        // Widths around the sixteen lanes, and the Flickr8k preset's vocabulary at a batch's
        // words (rows split between threads).
        for (n, width) in [(3, 1), (2, 15), (5, 37), (640, 1755)] {
            let x = unit::<Ad, 2>([n, width], 1, &device)
                .mul_scalar(4.0)
                .require_grad();
            let weigh = unit::<Ad, 2>([n, width], 2, &device);
            let run = |fused: bool| {
                let y = if fused {
                    fused::log_softmax(&x).expect("flex runs the fused log-softmax")
                } else {
                    log_softmax(x.clone(), 1)
                };
                let grads = (y.clone() * weigh.clone()).sum().backward();
                (y.inner(), x.grad(&grads).expect("x is tracked"))
            };
            let (ours, reference) = (run(true), run(false));
            let y_gap = relative_gap(ours.0.clone(), reference.0);
            let d_gap = relative_gap(ours.1, reference.1);
            assert!(
                y_gap < 1e-6 && d_gap < 1e-5,
                "[{n}, {width}]: y {y_gap}, d x {d_gap}"
            );
            // Without autodiff (searches), the same values.
            let plain = fused::log_softmax(&x.inner()).expect("flex runs the fused log-softmax");
            assert_eq!(plain.into_data(), ours.0.into_data());
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn on_flex_the_fused_gate_gives_the_values_and_gradients_of_the_tensor_operations() {
        use crate::fused::{self, relative_gap};
        use crate::test_random::unit;
        use burn::backend::Flex;
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        // Under the sixteen lanes, around them, and the preset's beams (a search's 96 rows:
        // threads). Each case has several values: the gaps are relative to the largest, and
        // the rational sigmoid's error is absolute (2.5e-7), so a single small sigmoid would
        // measure a relative error the kernel does not promise.
        for (n, width) in [(2, 15), (3, 37), (96, 1280)] {
            let drawn = |seed| unit::<Ad, 2>([n, width], seed, &device).mul_scalar(3.0);
            let x = drawn(1).require_grad();
            let g = drawn(2).require_grad();
            let weigh = drawn(3);
            let run = |fused: bool| {
                let y = if fused {
                    fused::gate(&x, &g).expect("flex runs the fused gate")
                } else {
                    sigmoid(g.clone()) * x.clone()
                };
                let grads = (y.clone() * weigh.clone()).sum().backward();
                let grad = |t: &Tensor<Ad, 2>| t.grad(&grads).expect("tracked");
                (y.inner(), grad(&x), grad(&g))
            };
            let (ours, reference) = (run(true), run(false));
            for (what, gap) in [
                ("y", relative_gap(ours.0.clone(), reference.0)),
                ("d x", relative_gap(ours.1, reference.1)),
                ("d g", relative_gap(ours.2, reference.2)),
            ] {
                assert!(gap < 1e-6, "[{n}, {width}]: {what} differs by {gap}");
            }
            let plain = fused::gate(&x.inner(), &g.inner()).expect("flex runs the fused gate");
            assert_eq!(plain.into_data(), ours.0.into_data());
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn on_flex_clamping_gives_burns_values_and_leaves_a_shared_tensor_as_it_was() {
        use burn::backend::Flex;
        let device = Default::default();
        // Below, inside, at and above the bounds, NaN, a tensor past the threads' threshold,
        // and a transposed view (not in row-major order).
        let mut values = vec![
            -7.0f32,
            -0.0,
            0.0,
            1e-30,
            3.5,
            6.0,
            6.000_001,
            1e30,
            f32::NAN,
        ];
        values.extend((0..40_002).map(|i| (i % 1000) as f32 * 0.013 - 2.0));
        let n = values.len();
        let x = Tensor::<Flex, 1>::from_floats(values.as_slice(), &device);
        let transposed = x.clone().reshape([n / 3, 3]).transpose();
        let expected = |t: Tensor<Flex, 1>| -> Vec<f32> {
            t.into_data()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.clamp(0.0, 6.0))
                .collect()
        };
        let same = |a: Vec<f32>, b: Vec<f32>| {
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
        };
        let y = crate::fused::clamp(x.clone(), 0.0, 6.0).expect("flex runs the fused clamp");
        assert!(same(y.into_data().to_vec().unwrap(), expected(x.clone())));
        // `x` is held here as well: the clamp must not have written into its values.
        let held: Vec<f32> = x.clone().into_data().to_vec().unwrap();
        assert!(same(held, values.clone()));
        let y = crate::fused::clamp(transposed.clone(), 0.0, 6.0).expect("flex");
        let flat = |t: Tensor<Flex, 2>| t.reshape([n]);
        assert!(same(
            flat(y).into_data().to_vec().unwrap(),
            expected(flat(transposed))
        ));
    }
}

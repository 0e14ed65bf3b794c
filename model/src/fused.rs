//! The decoder step's hot spots, each as one operation with its own backward, on the flex
//! backend: the attention, the LSTM cell's nonlinearities and state update, and (in
//! training) the step's products ([`step_product`]).
//!
//! [`crate::attention::Attention::forward`] and [`crate::lstm_cell::LstmCell::step`] are
//! written as Burn tensor operations, and on every backend but flex that is what runs. On
//! flex, Burn 0.21 runs each of those operations as its own pass over memory: for the
//! attention, over the `[n, positions, attention]` energies, the add of the query, the `tanh`
//! (through `exp`, one element at a time), the score product, and in the backward pass as
//! many again, each writing a tensor of that size; for the cell, a dozen small passes over
//! `[n, hidden]`. Here each is one loop per row, vectorised for AVX2 or AVX-512, whichever
//! the CPU has (`pulp`'s dispatch).
//!
//! **Attention** ([`attend`]):
//! - forward: `t = tanh(projected + query)`, `s = t . w`, `alpha = softmax(s)`,
//!   `context = sum_p alpha_p features_p`;
//! - backward: `d alpha` from the context's and alpha's gradients, `ds` through the softmax,
//!   then in one pass over `t` the gradients of `projected` (`ds w (1 - t^2)`), of the query
//!   (its sum over positions) and of `w`.
//!
//! The score layer's bias is left out: softmax does not depend on a shift of all its inputs,
//! so the bias changes nothing and its gradient is zero (the tensor-operation path computes
//! it as a sum that cancels to rounding noise).
//!
//! **LSTM cell** ([`lstm_cell`]): from the summed gates `[i, f, g, o]` and the previous cell
//! state, `c = sigmoid(f) c_prev + sigmoid(i) tanh(g)` and `h = sigmoid(o) tanh(c)`, and
//! back.
//!
//! **Step products** ([`step_product`]): `x W + b` with `W` in Burn's `[d_input, d_output]`
//! layout, and in the backward pass `d x = d y W^T` from a row-major copy of `W^T` rather
//! than a transposed view (see [`crate::step_linear::StepLinear`]).
//!
//! **Convolutions in training** ([`convolution`]): ResNet's and EfficientNet's convolutions
//! but the grouped (depthwise) ones, as one product per picture forward and two back (flex's
//! own convolution backward goes through `conv_transpose` and badly shaped products).
//!
//! Results are the same whatever the number of threads: rows are split between threads, and
//! sums across rows are added in row order (the products split their outputs, not their sums,
//! between threads). The tests of `attention.rs`, `lstm_cell.rs` and `step_linear.rs` hold
//! the outputs and every gradient to the tensor-operation path. Setting
//! `CAPTIONER_FUSED=0` in the environment turns the fused operations off (to compare speeds,
//! or to rule them out when something looks wrong).

use std::sync::OnceLock;

use burn::prelude::*;

/// Whether the fused kernels run where they can: yes unless the environment sets
/// `CAPTIONER_FUSED=0` (read once, at the first step).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let setting = std::env::var("CAPTIONER_FUSED");
        !matches!(setting.as_deref().map(str::trim), Ok("0"))
    })
}

/// The context `[n, feature_dim]` and the attention weights `[n, positions]`, computed by
/// the fused kernel, or `None` where the backend has none (every backend but flex and
/// `Autodiff<Flex>`, or tensors that are not `f32`).
///
/// - `features`: `[n, positions, feature_dim]`;
/// - `projected`: `[n, positions, attention_dim]`, the encoder side of the scores;
/// - `query`: `[n, attention_dim]`, the decoder side;
/// - `score`: `[attention_dim, 1]`, the score layer's weight.
pub fn attend<B: Backend>(
    features: &Tensor<B, 3>,
    projected: &Tensor<B, 3>,
    query: &Tensor<B, 2>,
    score: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
    #[cfg(feature = "flex")]
    {
        if !enabled() {
            return None;
        }
        let [n, positions, feature_dim] = features.dims();
        let [rows, positions_2, attention_dim] = projected.dims();
        if rows != n
            || positions_2 != positions
            || query.dims() != [n, attention_dim]
            || score.dims() != [attention_dim, 1]
        {
            return None;
        }
        let joined = on_flex::attend(features, projected, query, score)?;
        let context = joined.clone().narrow(1, 0, feature_dim);
        let alpha = joined.narrow(1, feature_dim, positions);
        Some((context, alpha))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (features, projected, query, score);
        None
    }
}

/// The LSTM cell's new hidden and cell states, `[n, hidden]` each, from the summed gates
/// `[n, 4 hidden]` (`[i, f, g, o]`) and the previous cell state `[n, hidden]`, computed by
/// the fused kernel, or `None` where the backend has none (as for [`attend`]).
pub fn lstm_cell<B: Backend>(
    gates: &Tensor<B, 2>,
    cell: &Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
    #[cfg(feature = "flex")]
    {
        if !enabled() {
            return None;
        }
        let [n, hidden] = cell.dims();
        if gates.dims() != [n, 4 * hidden] {
            return None;
        }
        let joined = on_flex::lstm_cell(gates, cell)?;
        let new_hidden = joined.clone().narrow(1, 0, hidden);
        let new_cell = joined.narrow(1, hidden, hidden);
        Some((new_hidden, new_cell))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (gates, cell);
        None
    }
}

/// Whether [`step_product`] and [`convolution`] run on backend `B`: on `Autodiff<Flex>`
/// (training on flex) unless `CAPTIONER_FUSED=0`.
pub fn training_on_flex<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        use burn::backend::{Autodiff, Flex};
        use std::any::TypeId;
        enabled() && TypeId::of::<B>() == TypeId::of::<Autodiff<Flex>>()
    }
    #[cfg(not(feature = "flex"))]
    false
}

/// Whether `B` is flex (inference) on a CPU with AVX-512, where gemm's kernels multiply by a
/// row-major right operand at least as fast as by a transposed one at every row count
/// measured (bench/RESULTS.md), so that [`crate::step_linear::StepLinear`]'s transposed
/// copy does not pay.
pub fn flex_with_avx512<B: Backend>() -> bool {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    {
        use burn::backend::Flex;
        use std::any::TypeId;
        TypeId::of::<B>() == TypeId::of::<Flex>() && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    false
}

/// `x weight + bias`, `[n, d_output]`, for a layer applied at every decoding step while
/// training on flex, or `None` elsewhere (see [`training_on_flex`]).
///
/// - `x`: `[n, d_input]`;
/// - `weight`: `[d_input, d_output]`, Burn's `Linear` layout, which the forward product
///   reads;
/// - `transposed`: the same values laid out `[d_output, d_input]`, a constant made once per
///   batch, which the backward product `d x = d y weight^T` reads.
///
/// Burn multiplies `d y` by a transposed view of `weight`, and flex's gemm (AVX-512 kernels)
/// packs such a view three times slower than a row-major operand at the few rows of a step
/// (bench/RESULTS.md). The products are gemm's, written straight into their outputs.
pub fn step_product<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    transposed: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        if !training_on_flex::<B>() {
            return None;
        }
        let [_, d_input] = x.dims();
        let [rows, d_output] = weight.dims();
        if rows != d_input
            || transposed.dims() != [d_output, d_input]
            || bias.is_some_and(|b| b.dims() != [d_output])
        {
            return None;
        }
        on_flex::step_product(x, weight, transposed, bias)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, weight, transposed, bias);
        None
    }
}

/// A convolution without dilation or groups, `[n, d_output, ho, wo]`, while training on flex,
/// or `None` elsewhere (see [`training_on_flex`]).
///
/// - `x`: `[n, d_input, h, w]`;
/// - `weight`: `[d_output, d_input, kh, kw]`;
/// - `bias`: `[d_output]`;
/// - `stride`: `[sy, sx]`;
/// - `padding`: `[(top, bottom), (left, right)]` zeros.
///
/// Picture by picture, the input is unrolled into `cols [d_input * kh * kw, ho * wo]` (im2col;
/// a 1x1 convolution of stride 1 without padding reads the input itself) and the output is
/// `weight [d_output, d_input * kh * kw]` times it. In the backward pass `d cols = weight^T d
/// y` is rolled back onto the input's positions, `d weight` is the sum over the pictures of `d
/// y cols^T` (`cols^T` a transposed view; several pictures' `cols` side by side in one
/// product, so that each product's sum is deep) and `d bias` the sum of `d y` over pictures and
/// positions: products of the layer's whole width, where flex's own convolution backward goes
/// through `conv_transpose`, im2col of badly shaped operands and copies (bench/RESULTS.md, row
/// 3). The pictures are split into one run per thread, each run's products on its thread (one
/// picture's products are too thin for gemm to spread over threads); each run sums its own
/// `d weight` and the runs' sums are added in order, so the result does not depend on which
/// thread finishes first.
pub fn convolution<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Option<Tensor<B, 4>> {
    #[cfg(feature = "flex")]
    {
        if !training_on_flex::<B>() {
            return None;
        }
        let [_, d_input, h, w] = x.dims();
        let [d_output, rows, kh, kw] = weight.dims();
        let [(top, bottom), (left, right)] = padding;
        if rows != d_input
            || x.dims().contains(&0)
            || weight.dims().contains(&0)
            || stride.contains(&0)
            || h + top + bottom < kh
            || w + left + right < kw
            || bias.is_some_and(|b| b.dims() != [d_output])
        {
            return None;
        }
        on_flex::convolution(x, weight, bias, stride, padding)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, weight, bias, stride, padding);
        None
    }
}

/// For the tests that hold a fused operation to the tensor operations: its output `y` and
/// the gradients of its input, weight and bias (`ours`) within 1e-5 of the reference's, the
/// bias's absent on both sides when the layer has none.
#[cfg(test)]
pub(crate) fn assert_same_outputs_and_gradients<B: Backend, const D: usize, const W: usize>(
    ours: (
        Tensor<B, D>,
        Tensor<B, D>,
        Tensor<B, W>,
        Option<Tensor<B, 1>>,
    ),
    reference: (
        Tensor<B, D>,
        Tensor<B, D>,
        Tensor<B, W>,
        Option<Tensor<B, 1>>,
    ),
    with_bias: bool,
    sizes: &str,
) {
    for (what, gap) in [
        ("y", relative_gap(ours.0, reference.0)),
        ("d x", relative_gap(ours.1, reference.1)),
        ("d weight", relative_gap(ours.2, reference.2)),
    ] {
        assert!(gap < 1e-5, "{what} differs by {gap} ({sizes})");
    }
    match (ours.3, reference.3) {
        (Some(ours), Some(reference)) => {
            let gap = relative_gap(ours, reference);
            assert!(gap < 1e-5, "d bias differs by {gap} ({sizes})");
        }
        (None, None) => assert!(!with_bias),
        _ => panic!("one side has a bias gradient ({sizes})"),
    }
}

/// For the tests that hold the fused operations to the tensor operations: the largest
/// difference between two tensors' values, relative to the largest value of `reference`.
#[cfg(test)]
pub(crate) fn relative_gap<B: Backend, const D: usize>(
    ours: Tensor<B, D>,
    reference: Tensor<B, D>,
) -> f32 {
    let ours: Vec<f32> = ours.into_data().to_vec().unwrap();
    let reference: Vec<f32> = reference.into_data().to_vec().unwrap();
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
    let gap = ours
        .iter()
        .zip(&reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    gap / scale
}

/// The arithmetic of the fused operations on plain `f32` slices, row-major.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
mod kernels {
    use rayon::prelude::*;

    /// Sizes of one step: `n` rows, `p` positions, `a` attention width, `e` feature width.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Dims {
        pub n: usize,
        pub p: usize,
        pub a: usize,
        pub e: usize,
    }

    /// `tanh` as a rational function (the odd 13/6 form that Eigen uses for `float`), within
    /// 5e-7 of `tanh` over all of `f32`: only multiplications, additions, a division and a
    /// clamp, so that it vectorises.
    #[inline(always)]
    fn tanh(x: f32) -> f32 {
        let x = x.clamp(-9.0, 9.0);
        let x2 = x * x;
        let mut p = -2.760_768_5e-16_f32;
        p = p * x2 + 2.000_188e-13;
        p = p * x2 - 8.604_672e-11;
        p = p * x2 + 5.122_297e-8;
        p = p * x2 + 1.485_722_4e-5;
        p = p * x2 + 6.372_619_3e-4;
        p = p * x2 + 4.893_524_6e-3;
        let mut q = 1.198_258_4e-6_f32;
        q = q * x2 + 1.185_347_1e-4;
        q = q * x2 + 2.268_434_6e-3;
        q = q * x2 + 4.893_525e-3;
        x * p / q
    }

    /// `x . y` with sixteen partial sums, which the compiler keeps in vector registers.
    #[inline(always)]
    fn dot(x: &[f32], y: &[f32]) -> f32 {
        let mut acc = [0.0f32; 16];
        let mut xs = x.chunks_exact(16);
        let mut ys = y.chunks_exact(16);
        for (xc, yc) in (&mut xs).zip(&mut ys) {
            for ((a, &x), &y) in acc.iter_mut().zip(xc).zip(yc) {
                *a += x * y;
            }
        }
        let tail: f32 = xs
            .remainder()
            .iter()
            .zip(ys.remainder())
            .map(|(a, b)| a * b)
            .sum();
        acc.iter().sum::<f32>() + tail
    }

    /// Runs `f` compiled for the best instruction set of this CPU.
    #[inline(always)]
    fn vectorised<R>(f: impl FnOnce() -> R) -> R {
        pulp::Arch::new().dispatch(f)
    }

    /// One row of the forward pass: writes `out` = `[context (e), alpha (p)]`, and the
    /// energies `[p, a]` into `energy`, or into its first `a` values one position at a time
    /// when it is that short.
    #[inline(always)]
    fn forward_row(
        d: Dims,
        features: &[f32],
        projected: &[f32],
        query: &[f32],
        w: &[f32],
        energy: &mut [f32],
        out: &mut [f32],
    ) {
        let (context, alpha) = out.split_at_mut(d.e);
        let keep = energy.len() == d.p * d.a;
        for (position, (score, projected)) in alpha
            .iter_mut()
            .zip(projected.chunks_exact(d.a))
            .enumerate()
        {
            let energy = &mut energy[if keep { position * d.a } else { 0 }..][..d.a];
            for ((t, &x), &y) in energy.iter_mut().zip(projected).zip(query) {
                *t = tanh(x + y);
            }
            *score = dot(energy, w);
        }
        let max = alpha.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for s in alpha.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        for s in alpha.iter_mut() {
            *s /= total;
        }
        context.fill(0.0);
        for (&weight, feature) in alpha.iter().zip(features.chunks_exact(d.e)) {
            for (c, &f) in context.iter_mut().zip(feature) {
                *c += weight * f;
            }
        }
    }

    /// The forward pass: `[n, e + p]` (context, then alpha), and when `keep_energy` the
    /// energies `tanh(projected + query)` `[n, p, a]` that the backward pass reads (empty
    /// otherwise).
    pub fn forward(
        d: Dims,
        features: &[f32],
        projected: &[f32],
        query: &[f32],
        w: &[f32],
        keep_energy: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut out = vec![0.0; d.n * (d.e + d.p)];
        let row = |row: usize, energy: &mut [f32], out: &mut [f32]| {
            vectorised(|| {
                forward_row(
                    d,
                    &features[row * d.p * d.e..][..d.p * d.e],
                    &projected[row * d.p * d.a..][..d.p * d.a],
                    &query[row * d.a..][..d.a],
                    w,
                    energy,
                    out,
                )
            })
        };
        let energy = if keep_energy {
            let mut energy = vec![0.0; d.n * d.p * d.a];
            out.par_chunks_mut(d.e + d.p)
                .zip(energy.par_chunks_mut(d.p * d.a))
                .enumerate()
                .for_each(|(i, (out, energy))| row(i, energy, out));
            energy
        } else {
            out.par_chunks_mut(d.e + d.p)
                .enumerate()
                .for_each_init(|| vec![0.0; d.a], |scratch, (i, out)| row(i, scratch, out));
            Vec::new()
        };
        (out, energy)
    }

    /// Gradients of the fused step.
    pub struct Gradients {
        /// `[n, p, a]`.
        pub projected: Vec<f32>,
        /// `[n, a]`.
        pub query: Vec<f32>,
        /// `[a]`.
        pub w: Vec<f32>,
        /// `[n, p, e]`, when asked for.
        pub features: Option<Vec<f32>>,
    }

    /// One row of the backward pass; `dw` receives this row's part of `w`'s gradient.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward_row(
        d: Dims,
        features: &[f32],
        alpha: &[f32],
        energy: &[f32],
        w: &[f32],
        d_out: &[f32],
        d_projected: &mut [f32],
        d_query: &mut [f32],
        dw: &mut [f32],
        ds: &mut [f32],
    ) {
        let (d_context, d_alpha) = d_out.split_at(d.e);
        for ((ds, &da), feature) in ds.iter_mut().zip(d_alpha).zip(features.chunks_exact(d.e)) {
            *ds = da + dot(d_context, feature);
        }
        let mean: f32 = alpha.iter().zip(ds.iter()).map(|(a, g)| a * g).sum();
        for (ds, &a) in ds.iter_mut().zip(alpha) {
            *ds = a * (*ds - mean);
        }
        d_query.fill(0.0);
        dw.fill(0.0);
        for ((&s, energy), d_projected) in ds
            .iter()
            .zip(energy.chunks_exact(d.a))
            .zip(d_projected.chunks_exact_mut(d.a))
        {
            for ((((g, &t), &w), dq), dw) in d_projected
                .iter_mut()
                .zip(energy)
                .zip(w)
                .zip(d_query.iter_mut())
                .zip(dw.iter_mut())
            {
                let v = s * w * (1.0 - t * t);
                *g = v;
                *dq += v;
                *dw += s * t;
            }
        }
    }

    /// The backward pass, given the forward pass's `out` and `energy` and the gradient of
    /// `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        d: Dims,
        features: &[f32],
        out: &[f32],
        energy: &[f32],
        w: &[f32],
        d_out: &[f32],
        want_features: bool,
    ) -> Gradients {
        let mut d_projected = vec![0.0; d.n * d.p * d.a];
        let mut d_query = vec![0.0; d.n * d.a];
        let mut dw_rows = vec![0.0; d.n * d.a];
        let mut ds = vec![0.0; d.n * d.p];
        d_projected
            .par_chunks_mut(d.p * d.a)
            .zip(d_query.par_chunks_mut(d.a))
            .zip(dw_rows.par_chunks_mut(d.a))
            .zip(ds.par_chunks_mut(d.p))
            .enumerate()
            .for_each(|(row, (((d_projected, d_query), dw), ds))| {
                vectorised(|| {
                    backward_row(
                        d,
                        &features[row * d.p * d.e..][..d.p * d.e],
                        &out[row * (d.e + d.p) + d.e..][..d.p],
                        &energy[row * d.p * d.a..][..d.p * d.a],
                        w,
                        &d_out[row * (d.e + d.p)..][..d.e + d.p],
                        d_projected,
                        d_query,
                        dw,
                        ds,
                    )
                })
            });
        // Rows added in order, so that the sum is the same whatever the threads did.
        let dw = sum_rows(&dw_rows, d.a);
        let features = want_features.then(|| {
            // d features_p = alpha_p d context.
            let mut d_features = vec![0.0; d.n * d.p * d.e];
            d_features
                .par_chunks_mut(d.p * d.e)
                .enumerate()
                .for_each(|(row, d_features)| {
                    let alpha = &out[row * (d.e + d.p) + d.e..][..d.p];
                    let d_context = &d_out[row * (d.e + d.p)..][..d.e];
                    vectorised(|| {
                        for (&a, g) in alpha.iter().zip(d_features.chunks_exact_mut(d.e)) {
                            for (g, &dc) in g.iter_mut().zip(d_context) {
                                *g = a * dc;
                            }
                        }
                    })
                });
            d_features
        });
        Gradients {
            projected: d_projected,
            query: d_query,
            w: dw,
            features,
        }
    }

    /// The sum of the rows of `rows` (`[_, width]`, row-major), added in row order.
    pub fn sum_rows(rows: &[f32], width: usize) -> Vec<f32> {
        let mut total = vec![0.0; width];
        for row in rows.chunks_exact(width) {
            for (total, &x) in total.iter_mut().zip(row) {
                *total += x;
            }
        }
        total
    }

    /// `sigmoid(x) = (1 + tanh(x / 2)) / 2`, through the rational [`tanh`].
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        0.5 + 0.5 * tanh(0.5 * x)
    }

    /// The LSTM cell forward: `[n, 2h]` (new hidden, then new cell) and, when `keep`, the
    /// activations `[n, 5h]` that the backward pass reads (`i, f, g, o` after their
    /// nonlinearities, then `tanh(c)`), empty otherwise.
    pub fn lstm_forward(
        n: usize,
        h: usize,
        gates: &[f32],
        cell: &[f32],
        keep: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut out = vec![0.0; n * 2 * h];
        let mut saved = if keep {
            vec![0.0; n * 5 * h]
        } else {
            Vec::new()
        };
        let row = |row: usize, out: &mut [f32], saved: &mut [f32]| {
            vectorised(|| {
                let gates = &gates[row * 4 * h..][..4 * h];
                let (gi, rest) = gates.split_at(h);
                let (gf, rest) = rest.split_at(h);
                let (gg, go) = rest.split_at(h);
                let c_prev = &cell[row * h..][..h];
                let (new_h, new_c) = out.split_at_mut(h);
                let activations = gi.iter().zip(gf).zip(gg).zip(go).zip(c_prev);
                for (j, ((((&gi, &gf), &gg), &go), &c_prev)) in activations.enumerate() {
                    let (i, f, g, o) = (sigmoid(gi), sigmoid(gf), tanh(gg), sigmoid(go));
                    let c = f * c_prev + i * g;
                    let tc = tanh(c);
                    new_c[j] = c;
                    new_h[j] = o * tc;
                    if !saved.is_empty() {
                        for (k, value) in [i, f, g, o, tc].into_iter().enumerate() {
                            saved[k * h + j] = value;
                        }
                    }
                }
            })
        };
        if keep {
            out.par_chunks_mut(2 * h)
                .zip(saved.par_chunks_mut(5 * h))
                .enumerate()
                .for_each(|(i, (out, saved))| row(i, out, saved));
        } else {
            out.par_chunks_mut(2 * h)
                .enumerate()
                .for_each(|(i, out)| row(i, out, &mut []));
        }
        (out, saved)
    }

    /// The LSTM cell backward, given the forward pass's `saved` activations, the previous
    /// cell state and the gradient `[n, 2h]` of its output: the gradients of the gates
    /// `[n, 4h]` and of the previous cell state `[n, h]`.
    pub fn lstm_backward(
        n: usize,
        h: usize,
        saved: &[f32],
        cell: &[f32],
        d_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let mut d_gates = vec![0.0; n * 4 * h];
        let mut d_cell = vec![0.0; n * h];
        d_gates
            .par_chunks_mut(4 * h)
            .zip(d_cell.par_chunks_mut(h))
            .enumerate()
            .for_each(|(row, (d_gates, d_cell))| {
                vectorised(|| {
                    let saved = &saved[row * 5 * h..][..5 * h];
                    let c_prev = &cell[row * h..][..h];
                    let (dh, dc_out) = d_out[row * 2 * h..][..2 * h].split_at(h);
                    let inputs = dh.iter().zip(dc_out).zip(c_prev).zip(d_cell.iter_mut());
                    for (j, (((&dh, &dc_out), &c_prev), d_cell)) in inputs.enumerate() {
                        let [i, f, g, o, tc] = [0, 1, 2, 3, 4].map(|k| saved[k * h + j]);
                        let dc = dc_out + dh * o * (1.0 - tc * tc);
                        d_gates[j] = dc * g * i * (1.0 - i);
                        d_gates[h + j] = dc * c_prev * f * (1.0 - f);
                        d_gates[2 * h + j] = dc * i * (1.0 - g * g);
                        d_gates[3 * h + j] = dh * tc * o * (1.0 - o);
                        *d_cell = dc * f;
                    }
                })
            });
        (d_gates, d_cell)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_rational_tanh_is_within_5e7_of_tanh_everywhere() {
            let mut worst = 0.0f64;
            for i in -240_000..=240_000 {
                let x = i as f32 * 5e-5;
                worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
            }
            for x in [-1e30f32, -50.0, -9.5, 9.5, 50.0, 1e30] {
                worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
            }
            assert!(worst < 5e-7, "worst error {worst}");
        }

        #[test]
        fn dot_adds_every_product_also_past_the_last_sixteen() {
            let x: Vec<f32> = (0..37).map(|i| i as f32).collect();
            let y: Vec<f32> = (0..37).map(|i| 1.0 + (i % 3) as f32).collect();
            let expected: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            assert_eq!(dot(&x, &y), expected);
        }
    }
}

#[cfg(feature = "flex")]
mod on_flex {
    use std::any::Any;

    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::{Autodiff, Flex};
    use burn::prelude::*;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{DType, TensorMetadata, TensorPrimitive};

    use rayon::prelude::*;

    use super::kernels::{self, Dims};

    /// `x` as a `U` when `T` is `U`, or back as it came.
    fn cast<T: 'static, U: 'static>(x: T) -> Result<U, T> {
        let mut slot = Some(x);
        match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
            Some(u) => Ok(u.take().expect("just filled")),
            None => Err(slot.expect("untouched")),
        }
    }

    fn primitive<B: Backend, const D: usize>(t: &Tensor<B, D>) -> B::FloatTensorPrimitive {
        t.clone().into_primitive().tensor()
    }

    /// An `f32` flex tensor whose values lie in row-major order: itself when they already
    /// do (a tensor narrowed to its first rows included), or a copy.
    fn values(t: &FlexTensor) -> Option<FlexTensor> {
        if t.dtype() != DType::F32 {
            return None;
        }
        Some(if t.is_contiguous() {
            t.clone()
        } else {
            t.to_contiguous()
        })
    }

    fn slice(t: &FlexTensor) -> &[f32] {
        t.as_slice::<f32>().expect("contiguous f32")
    }

    fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape))
    }

    fn dims(features: &FlexTensor, projected: &FlexTensor) -> Dims {
        let [n, p, e] = features.shape().dims();
        let a = projected.shape().dims::<3>()[2];
        Dims { n, p, a, e }
    }

    /// Runs `inference` when `B` is flex, `training` when it is `Autodiff<Flex>`, on the
    /// tensors' `primitives`; `None` on any other backend.
    fn dispatch<B: Backend, const N: usize>(
        primitives: [B::FloatTensorPrimitive; N],
        inference: impl FnOnce([FlexTensor; N]) -> Option<FlexTensor>,
        training: impl FnOnce([FloatTensor<Autodiff<Flex>>; N]) -> Option<FloatTensor<Autodiff<Flex>>>,
    ) -> Option<Tensor<B, 2>> {
        let joined = match cast::<_, [FlexTensor; N]>(primitives) {
            Ok(flex) => cast(inference(flex)?).ok()?,
            Err(primitives) => cast(training(cast(primitives).ok()?)?).ok()?,
        };
        Some(Tensor::from_primitive(TensorPrimitive::Float(joined)))
    }

    /// `[n, e + p]`: the context, then alpha.
    pub(super) fn attend<B: Backend>(
        features: &Tensor<B, 3>,
        projected: &Tensor<B, 3>,
        query: &Tensor<B, 2>,
        score: &Tensor<B, 2>,
    ) -> Option<Tensor<B, 2>> {
        let primitives = [
            primitive(features),
            primitive(projected),
            primitive(query),
            primitive(score),
        ];
        dispatch::<B, 4>(
            primitives,
            |[f, p, q, w]| inference(f, p, q, w),
            |[f, p, q, w]| training(f, p, q, w),
        )
    }

    fn inference(
        features: FlexTensor,
        projected: FlexTensor,
        query: FlexTensor,
        w: FlexTensor,
    ) -> Option<FlexTensor> {
        let [features, projected, query, w] = [
            values(&features)?,
            values(&projected)?,
            values(&query)?,
            values(&w)?,
        ];
        let d = dims(&features, &projected);
        let (out, _) = kernels::forward(
            d,
            slice(&features),
            slice(&projected),
            slice(&query),
            slice(&w),
            false,
        );
        Some(flex_tensor(out, [d.n, d.e + d.p]))
    }

    /// What the backward pass reads.
    #[derive(Debug, Clone)]
    struct Saved {
        features: FlexTensor,
        out: FlexTensor,
        energy: FlexTensor,
        w: FlexTensor,
        dims: Dims,
    }

    #[derive(Debug)]
    struct AttendBackward;

    impl Backward<Flex, 4> for AttendBackward {
        type State = Saved;

        fn backward(
            self,
            ops: Ops<Self::State, 4>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let Saved {
                features,
                out,
                energy,
                w,
                dims: d,
            } = ops.state;
            let [projected_node, query_node, w_node, features_node] = ops.parents;
            let d_out = grads.consume::<Flex>(&ops.node).to_contiguous();
            let g = kernels::backward(
                d,
                slice(&features),
                slice(&out),
                slice(&energy),
                slice(&w),
                slice(&d_out),
                features_node.is_some(),
            );
            if let Some(node) = projected_node {
                grads.register::<Flex>(node.id, flex_tensor(g.projected, [d.n, d.p, d.a]));
            }
            if let Some(node) = query_node {
                grads.register::<Flex>(node.id, flex_tensor(g.query, [d.n, d.a]));
            }
            if let Some(node) = w_node {
                grads.register::<Flex>(node.id, flex_tensor(g.w, [d.a, 1]));
            }
            if let (Some(node), Some(d_features)) = (features_node, g.features) {
                grads.register::<Flex>(node.id, flex_tensor(d_features, [d.n, d.p, d.e]));
            }
        }
    }

    fn training(
        features: FloatTensor<Autodiff<Flex>>,
        projected: FloatTensor<Autodiff<Flex>>,
        query: FloatTensor<Autodiff<Flex>>,
        w: FloatTensor<Autodiff<Flex>>,
    ) -> Option<FloatTensor<Autodiff<Flex>>> {
        let [f, p, q, wv] = [
            values(&features.primitive)?,
            values(&projected.primitive)?,
            values(&query.primitive)?,
            values(&w.primitive)?,
        ];
        let d = dims(&f, &p);
        let forward = |keep_energy| {
            let (out, energy) =
                kernels::forward(d, slice(&f), slice(&p), slice(&q), slice(&wv), keep_energy);
            (flex_tensor(out, [d.n, d.e + d.p]), energy)
        };
        let prepared = AttendBackward
            .prepare::<NoCheckpointing>([
                projected.node.clone(),
                query.node.clone(),
                w.node.clone(),
                features.node.clone(),
            ])
            .compute_bound()
            .stateful();
        Some(match prepared {
            OpsKind::Tracked(prep) => {
                let (out, energy) = forward(true);
                let saved = Saved {
                    energy: flex_tensor(energy, [d.n, d.p, d.a]),
                    out: out.clone(),
                    features: f.clone(),
                    w: wv.clone(),
                    dims: d,
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(false).0),
        })
    }

    /// `[n, 2 hidden]`: the new hidden state, then the new cell state.
    pub(super) fn lstm_cell<B: Backend>(
        gates: &Tensor<B, 2>,
        cell: &Tensor<B, 2>,
    ) -> Option<Tensor<B, 2>> {
        dispatch::<B, 2>(
            [primitive(gates), primitive(cell)],
            |[g, c]| {
                let [g, c] = [values(&g)?, values(&c)?];
                let [n, h] = c.shape().dims();
                let (out, _) = kernels::lstm_forward(n, h, slice(&g), slice(&c), false);
                Some(flex_tensor(out, [n, 2 * h]))
            },
            |[g, c]| lstm_training(g, c),
        )
    }

    /// What the LSTM cell's backward pass reads.
    #[derive(Debug, Clone)]
    struct CellSaved {
        activations: FlexTensor,
        cell: FlexTensor,
        n: usize,
        h: usize,
    }

    #[derive(Debug)]
    struct CellBackward;

    impl Backward<Flex, 2> for CellBackward {
        type State = CellSaved;

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let CellSaved {
                activations,
                cell,
                n,
                h,
            } = ops.state;
            let [gates_node, cell_node] = ops.parents;
            let d_out = grads.consume::<Flex>(&ops.node).to_contiguous();
            let (d_gates, d_cell) =
                kernels::lstm_backward(n, h, slice(&activations), slice(&cell), slice(&d_out));
            if let Some(node) = gates_node {
                grads.register::<Flex>(node.id, flex_tensor(d_gates, [n, 4 * h]));
            }
            if let Some(node) = cell_node {
                grads.register::<Flex>(node.id, flex_tensor(d_cell, [n, h]));
            }
        }
    }

    fn lstm_training(
        gates: FloatTensor<Autodiff<Flex>>,
        cell: FloatTensor<Autodiff<Flex>>,
    ) -> Option<FloatTensor<Autodiff<Flex>>> {
        let [g, c] = [values(&gates.primitive)?, values(&cell.primitive)?];
        let [n, h] = c.shape().dims();
        let prepared = CellBackward
            .prepare::<NoCheckpointing>([gates.node.clone(), cell.node.clone()])
            .compute_bound()
            .stateful();
        Some(match prepared {
            OpsKind::Tracked(prep) => {
                let (out, activations) = kernels::lstm_forward(n, h, slice(&g), slice(&c), true);
                let saved = CellSaved {
                    activations: flex_tensor(activations, [n, 5 * h]),
                    cell: c.clone(),
                    n,
                    h,
                };
                prep.finish(saved, flex_tensor(out, [n, 2 * h]))
            }
            OpsKind::UnTracked(prep) => {
                let (out, _) = kernels::lstm_forward(n, h, slice(&g), slice(&c), false);
                prep.finish(flex_tensor(out, [n, 2 * h]))
            }
        })
    }

    /// `lhs rhs`, `[m, n]` row-major, each operand given with its (row, column) strides in
    /// elements, written by gemm into a new buffer without zeroing it first (see
    /// [`product_into`]).
    fn product(
        [m, n, k]: [usize; 3],
        lhs: (&[f32], [usize; 2]),
        rhs: (&[f32], [usize; 2]),
    ) -> Vec<f32> {
        let mut dst: Vec<f32> = Vec::with_capacity(m * n);
        // SAFETY: `dst` has room for `[m, n]`; with `accumulate` false it is not read, and
        // each of its `m * n` values is written.
        unsafe {
            gemm_into([m, n, k], dst.as_mut_ptr(), false, lhs, rhs, true);
            dst.set_len(m * n);
        }
        dst
    }

    /// `dst = lhs rhs`, or `dst += lhs rhs` when `accumulate`, for `dst` `[m, n]` row-major,
    /// each operand given with its (row, column) strides in elements. With `threaded`, gemm
    /// runs on all threads once the product is as large as flex's own threshold for that;
    /// without, on the calling thread only.
    fn product_into(
        dims: [usize; 3],
        dst: &mut [f32],
        accumulate: bool,
        lhs: (&[f32], [usize; 2]),
        rhs: (&[f32], [usize; 2]),
        threaded: bool,
    ) {
        let [m, n, _] = dims;
        assert!(dst.len() == m * n, "dst holds [{m}, {n}]");
        // SAFETY: `dst` is `[m, n]` of initialised values.
        unsafe { gemm_into(dims, dst.as_mut_ptr(), accumulate, lhs, rhs, threaded) }
    }

    /// [`product_into`] on `m * n` values at `dst`.
    ///
    /// # Safety
    /// `dst` points to room for `m * n` values, initialised when `accumulate`.
    unsafe fn gemm_into(
        [m, n, k]: [usize; 3],
        dst: *mut f32,
        accumulate: bool,
        (lhs, [lhs_row, lhs_col]): (&[f32], [usize; 2]),
        (rhs, [rhs_row, rhs_col]): (&[f32], [usize; 2]),
        threaded: bool,
    ) {
        let reach = |rows: usize, cols: usize, row: usize, col: usize| {
            (rows.max(1) - 1) * row + (cols.max(1) - 1) * col + 1
        };
        assert!(
            lhs.len() >= reach(m, k, lhs_row, lhs_col),
            "lhs holds [{m}, {k}]"
        );
        assert!(
            rhs.len() >= reach(k, n, rhs_row, rhs_col),
            "rhs holds [{k}, {n}]"
        );
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                // SAFETY: the caller gives room for `m * n` values.
                unsafe { std::ptr::write_bytes(dst, 0, m * n) };
            }
            return;
        }
        let parallelism = if threaded && m * n * k >= 192 * 192 * 192 {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the asserts above keep every element that the strides reach inside its
        // slice, and the caller gives `dst` room for `[m, n]`; gemm reads it only when
        // `accumulate`, and then the caller has initialised it.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                1,
                n as isize,
                accumulate,
                lhs.as_ptr(),
                lhs_col as isize,
                lhs_row as isize,
                rhs.as_ptr(),
                rhs_col as isize,
                rhs_row as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }

    /// What the backward pass of [`step_product`] reads: the input `[n, d_input]` and the
    /// weight laid out `[d_output, d_input]`.
    #[derive(Debug, Clone)]
    struct ProductSaved {
        x: FlexTensor,
        transposed: FlexTensor,
        n: usize,
        d_input: usize,
        d_output: usize,
    }

    /// Parents: the input, the weight, and the bias where the layer has one.
    #[derive(Debug)]
    struct ProductBackward;

    impl<const N: usize> Backward<Flex, N> for ProductBackward {
        type State = ProductSaved;

        fn backward(
            self,
            ops: Ops<Self::State, N>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let ProductSaved {
                x,
                transposed,
                n,
                d_input,
                d_output,
            } = ops.state;
            let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
            let d_y = slice(&d_y);
            let mut parents = ops.parents.into_iter();
            if let Some(node) = parents.next().flatten() {
                // d x = d y W^T, with W^T read row-major from the copy.
                let d_x = product(
                    [n, d_input, d_output],
                    (d_y, [d_output, 1]),
                    (slice(&transposed), [d_input, 1]),
                );
                grads.register::<Flex>(node.id, flex_tensor(d_x, [n, d_input]));
            }
            if let Some(node) = parents.next().flatten() {
                // d W = x^T d y.
                let d_w = product(
                    [d_input, d_output, n],
                    (slice(&x), [1, d_input]),
                    (d_y, [d_output, 1]),
                );
                grads.register::<Flex>(node.id, flex_tensor(d_w, [d_input, d_output]));
            }
            if let Some(node) = parents.next().flatten() {
                // d b = the sum of d y's rows.
                let d_b = kernels::sum_rows(d_y, d_output);
                grads.register::<Flex>(node.id, flex_tensor(d_b, [d_output]));
            }
        }
    }

    /// An operation's output, with what its backward pass reads when it is tracked.
    fn record<O, S, const N: usize>(
        kind: OpsKind<O, Flex, S, NoCheckpointing, N>,
        saved: impl FnOnce() -> S,
        forward: impl FnOnce() -> FlexTensor,
    ) -> FloatTensor<Autodiff<Flex>>
    where
        O: Backward<Flex, N, State = S>,
        S: Clone + Send + std::fmt::Debug + 'static,
    {
        match kind {
            OpsKind::Tracked(prep) => prep.finish(saved(), forward()),
            OpsKind::UnTracked(prep) => prep.finish(forward()),
        }
    }

    type Ad = FloatTensor<Autodiff<Flex>>;

    /// A layer's bias as a tracked tensor and its values, `Some(None)` without one, `None`
    /// when it is not an `f32` tensor of `Autodiff<Flex>`.
    fn bias_of<B: Backend>(bias: Option<&Tensor<B, 1>>) -> Option<Option<(Ad, FlexTensor)>> {
        let Some(bias) = bias else {
            return Some(None);
        };
        let bias: Ad = cast(primitive(bias)).ok()?;
        let values = values(&bias.primitive)?;
        Some(Some((bias, values)))
    }

    /// The output of a layer's operation, whose parents are its input, its weight and its
    /// bias where it has one.
    fn record_layer<O, S>(
        backward: O,
        [x, weight]: [&Ad; 2],
        bias: Option<Ad>,
        saved: impl FnOnce() -> S,
        forward: impl FnOnce() -> FlexTensor,
    ) -> Ad
    where
        O: Backward<Flex, 2, State = S> + Backward<Flex, 3, State = S>,
        S: Clone + Send + std::fmt::Debug + 'static,
    {
        let (x, weight) = (x.node.clone(), weight.node.clone());
        match bias {
            Some(b) => record(
                <O as Backward<Flex, 3>>::prepare::<NoCheckpointing>(backward, [x, weight, b.node])
                    .compute_bound()
                    .stateful(),
                saved,
                forward,
            ),
            None => record(
                <O as Backward<Flex, 2>>::prepare::<NoCheckpointing>(backward, [x, weight])
                    .compute_bound()
                    .stateful(),
                saved,
                forward,
            ),
        }
    }

    pub(super) fn step_product<B: Backend>(
        x: &Tensor<B, 2>,
        weight: &Tensor<B, 2>,
        transposed: &Tensor<B, 2>,
        bias: Option<&Tensor<B, 1>>,
    ) -> Option<Tensor<B, 2>> {
        let x: Ad = cast(primitive(x)).ok()?;
        let weight: Ad = cast(primitive(weight)).ok()?;
        let transposed: Ad = cast(primitive(transposed)).ok()?;
        let (bias, bv) = bias_of(bias)?.unzip();
        let [xv, wv, tv] = [
            values(&x.primitive)?,
            values(&weight.primitive)?,
            values(&transposed.primitive)?,
        ];
        let [n, d_input] = xv.shape().dims();
        let d_output = wv.shape().dims::<2>()[1];
        let forward = || {
            let x = (slice(&xv), [d_input, 1]);
            let mut y = product([n, d_output, d_input], x, (slice(&wv), [d_output, 1]));
            if let Some(b) = &bv {
                for row in y.chunks_exact_mut(d_output) {
                    for (y, &b) in row.iter_mut().zip(slice(b)) {
                        *y += b;
                    }
                }
            }
            flex_tensor(y, [n, d_output])
        };
        let saved = || ProductSaved {
            x: xv.clone(),
            transposed: tv.clone(),
            n,
            d_input,
            d_output,
        };
        let y = record_layer(ProductBackward, [&x, &weight], bias, saved, forward);
        Some(Tensor::from_primitive(TensorPrimitive::Float(
            cast(y).ok()?,
        )))
    }

    /// The sizes of a convolution over one picture.
    #[derive(Debug, Clone, Copy)]
    struct ConvDims {
        d_input: usize,
        d_output: usize,
        /// The input's height and width.
        size: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        /// `[(top, bottom), (left, right)]` zeros.
        padding: [(usize, usize); 2],
    }

    impl ConvDims {
        /// The output's height and width.
        fn out(&self) -> [usize; 2] {
            std::array::from_fn(|i| {
                let (before, after) = self.padding[i];
                (self.size[i] + before + after - self.kernel[i]) / self.stride[i] + 1
            })
        }

        /// The rows of the unrolled input: one a channel and kernel tap.
        fn taps(&self) -> usize {
            self.d_input * self.kernel[0] * self.kernel[1]
        }

        /// A 1x1 convolution of stride 1 without padding: the unrolled input is the input
        /// itself.
        fn pointwise(&self) -> bool {
            self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [(0, 0); 2]
        }

        fn input_len(&self) -> usize {
            self.d_input * self.size[0] * self.size[1]
        }

        fn output_len(&self) -> usize {
            let [ho, wo] = self.out();
            self.d_output * ho * wo
        }

        /// For kernel tap `tap` along `axis`, the outputs `o` whose input row or column
        /// `o * stride + tap - before` is inside the input: `(first o, last o + 1, the first
        /// one's input)`.
        fn span(&self, axis: usize, tap: usize) -> (usize, usize, usize) {
            let (out, size, stride) = (self.out()[axis], self.size[axis], self.stride[axis]);
            let before = self.padding[axis].0;
            let first = before.saturating_sub(tap).div_ceil(stride);
            let end = (size + before)
                .saturating_sub(tap)
                .div_ceil(stride)
                .min(out);
            // first * stride + tap >= before, by the choice of first.
            (
                first,
                end.max(first),
                (first * stride + tap).saturating_sub(before),
            )
        }

        /// Calls `f(row, at_row, at_x, len)` for every run of `len` values that row `row` of
        /// the unrolled input `[taps, ho * wo]` reads from the input `[d_input, h, w]`, from
        /// `at_row` in the row and from `at_x` in the input, `stride[1]` apart there: row `(c,
        /// ky, kx)` holds `x[c, oy * sy + ky - top, ox * sx + kx - left]`, zero outside the
        /// input.
        fn runs(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
            let [h, w] = self.size;
            let [kh, kw] = self.kernel;
            let wo = self.out()[1];
            let sy = self.stride[0];
            for c in 0..self.d_input {
                for ky in 0..kh {
                    let (oy0, oy1, iy0) = self.span(0, ky);
                    for kx in 0..kw {
                        let (ox0, ox1, ix0) = self.span(1, kx);
                        if ox0 == ox1 {
                            continue;
                        }
                        let row = (c * kh + ky) * kw + kx;
                        for (dy, oy) in (oy0..oy1).enumerate() {
                            let at_x = (c * h + iy0 + dy * sy) * w + ix0;
                            f(row, oy * wo + ox0, at_x, ox1 - ox0);
                        }
                    }
                }
            }
        }

        fn positions(&self) -> usize {
            let [ho, wo] = self.out();
            ho * wo
        }

        /// How many of `pictures` one product of `d W` takes: enough that its `group *
        /// positions` terms make the sum deep (a picture of ResNet's layer 4 has 49 positions,
        /// of layer 3 196), in groups of about the same size.
        fn group(&self, pictures: usize) -> usize {
            let wanted = GROUP_COLUMNS.div_ceil(self.positions().max(1));
            let groups = pictures.div_ceil(wanted).max(1);
            pictures.div_ceil(groups).max(1)
        }

        /// Room for the unrolled inputs of `group` pictures side by side, `[taps, group *
        /// positions]`: none where one picture's input is read as it is
        /// ([`ConvDims::unrolled`]).
        fn scratch(&self, group: usize) -> Vec<f32> {
            let len = if self.pointwise() && group == 1 {
                0
            } else {
                self.taps() * group * self.positions()
            };
            vec![0.0; len]
        }

        /// The unrolled inputs of the pictures `xs [g, d_input, h, w]` side by side, `[taps, g
        /// * positions]` (im2col, see [`ConvDims::runs`]): `xs` itself for one picture of a
        /// 1x1 convolution of stride 1 without padding, else written into `cols` (from
        /// [`ConvDims::scratch`]).
        fn unrolled<'a>(&self, xs: &'a [f32], cols: &'a mut [f32]) -> &'a [f32] {
            let positions = self.positions();
            if self.pointwise() {
                return side_by_side(xs, [self.d_input, positions], cols);
            }
            let g = xs.len() / self.input_len();
            let width = g * positions;
            let cols = &mut cols[..self.taps() * width];
            cols.fill(0.0);
            let sx = self.stride[1];
            for (picture, x) in xs.chunks_exact(self.input_len()).enumerate() {
                let offset = picture * positions;
                self.runs(|row, at_row, at_x, len| {
                    let to = &mut cols[row * width + offset + at_row..][..len];
                    if sx == 1 {
                        to.copy_from_slice(&x[at_x..at_x + len]);
                    } else {
                        for (to, from) in to.iter_mut().zip(x[at_x..].iter().step_by(sx)) {
                            *to = *from;
                        }
                    }
                });
            }
            cols
        }

        /// The transpose of [`ConvDims::unrolled`] for one picture (col2im): adds each value
        /// of `cols [taps, ho * wo]` onto the input position it was read from, into `d_x
        /// [d_input, h, w]`.
        fn roll_back(&self, cols: &[f32], d_x: &mut [f32]) {
            d_x.fill(0.0);
            let positions = self.positions();
            let sx = self.stride[1];
            self.runs(|row, at_row, at_x, len| {
                let from = &cols[row * positions + at_row..][..len];
                for (to, &from) in d_x[at_x..].iter_mut().step_by(sx).zip(from) {
                    *to += from;
                }
            });
        }
    }

    /// Terms a product of `d W` sums at least, where a run has the pictures for them: one
    /// picture's product reads and writes the whole `d W` for as few as 49 terms (ResNet's
    /// layer 4). Grouping the forward and `d x` products as well did not pay (bench/RESULTS.md,
    /// "one run of pictures per core").
    const GROUP_COLUMNS: usize = 1024;

    /// The pictures `[g, rows, positions]` side by side, `[rows, g * positions]`: `pictures`
    /// itself for one picture, else copied into the start of `wide`.
    fn side_by_side<'a>(
        pictures: &'a [f32],
        [rows, positions]: [usize; 2],
        wide: &'a mut [f32],
    ) -> &'a [f32] {
        let block = rows * positions;
        if pictures.len() == block {
            return pictures;
        }
        let width = pictures.len() / rows.max(1);
        for (picture, values) in pictures.chunks_exact(block.max(1)).enumerate() {
            for (row, values) in values.chunks_exact(positions.max(1)).enumerate() {
                wide[row * width + picture * positions..][..positions].copy_from_slice(values);
            }
        }
        &wide[..pictures.len()]
    }

    /// A batch's pictures split into one run of neighbours per thread, each run's products on
    /// its own thread: one picture's products are too thin for gemm to split between threads
    /// (measured in bench/RESULTS.md, "one run of pictures per core"). A batch of fewer
    /// pictures than threads is split less, and a single run's products use every thread
    /// again.
    #[derive(Debug, Clone, Copy)]
    struct PictureRuns {
        /// Pictures per run (the last one may have fewer).
        per_run: usize,
        /// Whether gemm may split each product between threads: when there is one run.
        threaded: bool,
    }

    impl PictureRuns {
        fn new(pictures: usize) -> Self {
            let runs = rayon::current_num_threads().min(pictures).max(1);
            Self {
                per_run: pictures.div_ceil(runs).max(1),
                threaded: runs == 1,
            }
        }

        /// `values`, `per_picture` of them a picture, in runs, on rayon's threads.
        fn of<'a>(&self, values: &'a [f32], per_picture: usize) -> rayon::slice::Chunks<'a, f32> {
            values.par_chunks(self.per_run * per_picture.max(1))
        }

        /// [`PictureRuns::of`], for writing.
        fn of_mut<'a>(
            &self,
            values: &'a mut [f32],
            per_picture: usize,
        ) -> rayon::slice::ChunksMut<'a, f32> {
            values.par_chunks_mut(self.per_run * per_picture.max(1))
        }
    }

    /// What the backward pass of [`convolution`] reads: the input `[n, d_input, h, w]`
    /// (unrolled again there rather than kept unrolled) and the weight `[d_output, taps]`.
    #[derive(Debug, Clone)]
    struct ConvSaved {
        x: FlexTensor,
        weight: FlexTensor,
        n: usize,
        dims: ConvDims,
    }

    /// Parents: the input, the weight, and the bias where the convolution has one.
    #[derive(Debug)]
    struct ConvBackward;

    impl<const N: usize> Backward<Flex, N> for ConvBackward {
        type State = ConvSaved;

        fn backward(
            self,
            ops: Ops<Self::State, N>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let ConvSaved { x, weight, n, dims } = ops.state;
            let ConvDims {
                d_input,
                d_output,
                size: [h, w],
                ..
            } = dims;
            let [ho, wo] = dims.out();
            let (positions, taps) = (ho * wo, dims.taps());
            let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
            let d_y = slice(&d_y);
            let runs = PictureRuns::new(n);
            let (input_len, output_len) = (dims.input_len(), dims.output_len());
            let mut parents = ops.parents.into_iter();
            if let Some(node) = parents.next().flatten() {
                // d cols = W^T d y (W^T a view of W: its rows are long), rolled back onto x.
                let mut d_x = vec![0.0; n * input_len];
                runs.of_mut(&mut d_x, input_len)
                    .zip(runs.of(d_y, output_len))
                    .for_each(|(d_x, d_y)| {
                        let mut d_cols = dims.scratch(1);
                        for (d_x, d_y) in d_x
                            .chunks_exact_mut(input_len)
                            .zip(d_y.chunks_exact(output_len))
                        {
                            let into = if dims.pointwise() {
                                &mut *d_x
                            } else {
                                &mut d_cols
                            };
                            product_into(
                                [taps, positions, d_output],
                                into,
                                false,
                                (slice(&weight), [1, taps]),
                                (d_y, [positions, 1]),
                                runs.threaded,
                            );
                            if !dims.pointwise() {
                                dims.roll_back(&d_cols, d_x);
                            }
                        }
                    });
                grads.register::<Flex>(node.id, flex_tensor(d_x, [n, d_input, h, w]));
            }
            if let Some(node) = parents.next().flatten() {
                // d W = the sum over pictures of d y cols^T, cols^T a view of cols (on this
                // product gemm packs the view faster than a row-major copy is made): a sum
                // per run of pictures, then the runs' sums added in order.
                let sums: Vec<Vec<f32>> = runs
                    .of(slice(&x), input_len)
                    .zip(runs.of(d_y, output_len))
                    .map(|(x, d_y)| {
                        let group = dims.group(x.len() / input_len);
                        let mut d_w = vec![0.0; d_output * taps];
                        let mut cols = dims.scratch(group);
                        let mut wide_d_y = vec![0.0; group * output_len];
                        for (at, (x, d_y)) in x
                            .chunks(group * input_len)
                            .zip(d_y.chunks(group * output_len))
                            .enumerate()
                        {
                            let width = d_y.len() / d_output;
                            let unrolled = dims.unrolled(x, &mut cols);
                            let d_y = side_by_side(d_y, [d_output, positions], &mut wide_d_y);
                            product_into(
                                [d_output, taps, width],
                                &mut d_w,
                                at > 0,
                                (d_y, [width, 1]),
                                (unrolled, [1, width]),
                                runs.threaded,
                            );
                        }
                        d_w
                    })
                    .collect();
                let mut sums = sums.into_iter();
                let mut d_w = sums.next().unwrap_or_else(|| vec![0.0; d_output * taps]);
                for sum in sums {
                    d_w.iter_mut().zip(sum).for_each(|(d_w, s)| *d_w += s);
                }
                let [kh, kw] = dims.kernel;
                grads.register::<Flex>(node.id, flex_tensor(d_w, [d_output, d_input, kh, kw]));
            }
            if let Some(node) = parents.next().flatten() {
                // d b = the sum of d y over pictures and positions.
                let mut d_b = vec![0.0f32; d_output];
                for picture in d_y.chunks_exact(dims.output_len()) {
                    for (d_b, channel) in d_b.iter_mut().zip(picture.chunks_exact(positions)) {
                        *d_b += channel.iter().sum::<f32>();
                    }
                }
                grads.register::<Flex>(node.id, flex_tensor(d_b, [d_output]));
            }
        }
    }

    pub(super) fn convolution<B: Backend>(
        x: &Tensor<B, 4>,
        weight: &Tensor<B, 4>,
        bias: Option<&Tensor<B, 1>>,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> Option<Tensor<B, 4>> {
        let x: Ad = cast(primitive(x)).ok()?;
        let weight: Ad = cast(primitive(weight)).ok()?;
        let (bias, bv) = bias_of(bias)?.unzip();
        let [xv, wv] = [values(&x.primitive)?, values(&weight.primitive)?];
        let [n, d_input, h, w] = xv.shape().dims();
        let [d_output, _, kh, kw] = wv.shape().dims();
        let dims = ConvDims {
            d_input,
            d_output,
            size: [h, w],
            kernel: [kh, kw],
            stride,
            padding,
        };
        let [ho, wo] = dims.out();
        let (positions, taps) = (ho * wo, dims.taps());
        let forward = || {
            let runs = PictureRuns::new(n);
            let (input_len, output_len) = (dims.input_len(), dims.output_len());
            let mut y = vec![0.0; n * output_len];
            runs.of_mut(&mut y, output_len)
                .zip(runs.of(slice(&xv), input_len))
                .for_each(|(y, x)| {
                    let mut cols = dims.scratch(1);
                    for (y, x) in y
                        .chunks_exact_mut(output_len)
                        .zip(x.chunks_exact(input_len))
                    {
                        let unrolled = dims.unrolled(x, &mut cols);
                        product_into(
                            [d_output, positions, taps],
                            y,
                            false,
                            (slice(&wv), [taps, 1]),
                            (unrolled, [positions, 1]),
                            runs.threaded,
                        );
                        if let Some(b) = &bv {
                            for (channel, &b) in y.chunks_exact_mut(positions).zip(slice(b)) {
                                channel.iter_mut().for_each(|y| *y += b);
                            }
                        }
                    }
                });
            flex_tensor(y, [n, d_output, ho, wo])
        };
        let saved = || ConvSaved {
            x: xv.clone(),
            weight: wv.clone(),
            n,
            dims,
        };
        let y = record_layer(ConvBackward, [&x, &weight], bias, saved, forward);
        Some(Tensor::from_primitive(TensorPrimitive::Float(
            cast(y).ok()?,
        )))
    }
}

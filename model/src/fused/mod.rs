//! The decoder step's hot spots, each as one operation with its own backward, on the flex
//! backend: the attention, its gate, the LSTM cell's nonlinearities and state update, the
//! step's products ([`step_product`]) and the log-softmax over the vocabulary; and the
//! encoders' convolutions, depthwise convolutions and ReLU6.
//!
//! [`crate::attention::Attention::forward`] and [`crate::lstm_cell::LstmCell::step`] are
//! written as Burn tensor operations, and on every backend but flex that is what runs. On
//! flex, Burn 0.21 runs each of those operations as its own pass over memory: for the
//! attention, over the `[n, positions, attention]` energies, the add of the query, the `tanh`
//! (through `exp`, one element at a time), the score product, and in the backward pass as
//! many again, each writing a tensor of that size; for the cell, a dozen small passes over
//! `[n, hidden]`. Here each is one loop per row, compiled for AVX-512, for AVX2 and for the
//! plain target, and run as the best build the CPU can run (`kernels::vectorised!`).
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
//! **Step products** ([`step_product`]), in searches and in training: `x W + b` by `W`
//! packed once into panels ([`panels`]), and in the backward pass `d x = d y W^T` by panels of
//! `W^T` (see [`crate::step_linear::StepLinear`]).
//!
//! **Gradients summed in place** ([`StepGradient`], [`AttendGradients`], and each
//! [`PackedWeight`]'s): what every step of a teacher-forced pass reads (a step layer's weight,
//! the embedded words' gates through [`step_rows`], the features and their projection) gets
//! its steps' gradients added into one buffer, registered once, rather than a whole-size
//! gradient per step that Burn's autodiff adds to the others one at a time
//! (`on_flex/sums.rs`).
//!
//! **The gate** ([`gate`]): the context times `sigmoid` of the gate layer, in one pass.
//!
//! **Log-softmax** ([`log_softmax`]) over the next word's scores, in searches and in the
//! loss: one pass per row with a vectorised `exp`, rows split between threads, and back.
//!
//! **Convolutions** ([`convolution`]): ResNet's and EfficientNet's, as one product per
//! picture forward and two back (flex's own convolution backward goes through
//! `conv_transpose` and badly shaped products), a run of pictures on each thread; and
//! EfficientNet's depthwise ones, each plane padded and split into its stride's phases so
//! that every filter tap is one vectorised pass, and back.
//!
//! **Clamping** ([`clamp`]): EfficientNet's ReLU6 in inference, vectorised, in place.
//!
//! Results are the same whatever the number of threads: rows are split between threads, and
//! sums across rows are added in row order (the products split their outputs, not their sums,
//! between threads). The tests of `attention.rs`, `lstm_cell.rs`, `step_linear.rs` and
//! `decoder.rs` hold the outputs and every gradient to the tensor-operation path. Setting
//! `CAPTIONER_FUSED=0` in the environment turns the fused operations off (to compare speeds,
//! or to rule them out when something looks wrong).

use std::sync::OnceLock;

use burn::prelude::*;

/// Which build of the fused kernels this CPU runs: AVX-512, AVX2 with FMA, or the plain
/// target's. One answer for every kernel (`kernels::vectorised!`, [`panels`]); the standard
/// library asks the CPU once and caches the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Plain,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    }
}

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
/// - `score`: `[attention_dim, 1]`, the score layer's weight;
/// - `gradients`: where, in training, the steps of a pass add the gradients of `features`
///   and `projected` in place (each step's `features` and `projected` the first rows of the
///   first step's), registered once for them rather than step by step.
pub fn attend<B: Backend>(
    features: &Tensor<B, 3>,
    projected: &Tensor<B, 3>,
    query: &Tensor<B, 2>,
    score: &Tensor<B, 2>,
    gradients: &AttendGradients,
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
        let joined = on_flex::attend(features, projected, query, score, gradients)?;
        let context = joined.clone().narrow(1, 0, feature_dim);
        let alpha = joined.narrow(1, feature_dim, positions);
        Some((context, alpha))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (features, projected, query, score, gradients);
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

/// `x sigmoid(g)` element by element (the attention's gated context), computed by the fused
/// kernel, or `None` where the backend has none (as for [`attend`]) or the shapes differ.
/// Burn 0.21 on flex computes the sigmoid through `exp` one element at a time on one thread
/// and the product as a second pass; here it is one pass, its sigmoid the kernels' rational
/// `tanh`, and back.
pub fn gate<B: Backend>(x: &Tensor<B, 2>, g: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        if !enabled() || x.dims() != g.dims() {
            return None;
        }
        on_flex::gate(x, g)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, g);
        None
    }
}

/// `x` clamped to `[lo, hi]` by the fused kernel on flex (in inference: the input tensor's
/// values are overwritten where it holds them alone), or `x` back as it came elsewhere (on
/// `Autodiff<Flex>` too) or with `CAPTIONER_FUSED=0`. Burn 0.21 on flex clamps one value at a
/// time on one thread; here it vectorises and splits between threads.
pub fn clamp<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    lo: f32,
    hi: f32,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "flex")]
    {
        if !enabled() {
            return Err(x);
        }
        on_flex::clamp(x, lo, hi)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (lo, hi);
        Err(x)
    }
}

/// Log-softmax over each row of `x` `[n, width]` (`x - max - ln(sum(exp(x - max)))`, row by
/// row), computed by the fused kernel, or `None` where the backend has none (as for
/// [`attend`]). Burn 0.21 on flex computes it as five passes over memory (a max, a
/// subtraction, `exp` one element at a time through the C library, a sum and a
/// subtraction) on one thread; here it is one loop per row, its `exp` a polynomial that
/// vectorises, the rows split between threads. The backward pass is `d x = d y - exp(y)
/// sum(d y)` from the output `y`, in the same way.
pub fn log_softmax<B: Backend>(x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        if !enabled() {
            return None;
        }
        on_flex::log_softmax(x)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = x;
        None
    }
}

/// Whether the fused operations run on backend `B`: flex or `Autodiff<Flex>`, unless
/// `CAPTIONER_FUSED=0`.
#[cfg(feature = "flex")]
fn on_flex<B: Backend>() -> bool {
    use burn::backend::{Autodiff, Flex};
    use std::any::TypeId;
    let backend = TypeId::of::<B>();
    enabled() && (backend == TypeId::of::<Flex>() || backend == TypeId::of::<Autodiff<Flex>>())
}

/// A step layer's weight packed into panels ([`panels`]) for the products on flex: `W` for
/// the forward product, and in training `W^T` for the backward's `d x = d y W^T`, each
/// packed at the first step that reads it (once per batch or search). In training the
/// steps' `d W` are added in place into one sum, registered once for the weight. Clones
/// share the packed values and the sum.
#[derive(Debug, Clone, Default)]
pub struct PackedWeight {
    #[cfg(feature = "flex")]
    forward: std::sync::Arc<OnceLock<std::sync::Arc<panels::Panels>>>,
    #[cfg(feature = "flex")]
    backward: std::sync::Arc<OnceLock<std::sync::Arc<panels::Panels>>>,
    #[cfg(feature = "flex")]
    gradient: on_flex::Collector,
}

impl PackedWeight {
    /// Whether the forward product's panels have been packed.
    pub fn is_packed(&self) -> bool {
        #[cfg(feature = "flex")]
        return self.forward.get().is_some();
        #[cfg(not(feature = "flex"))]
        false
    }
}

/// `x weight + bias`, `[n, d_output]`, for a layer applied at every decoding step, on flex
/// (inference) and `Autodiff<Flex>` (training), or `None` elsewhere or with
/// `CAPTIONER_FUSED=0`.
///
/// - `x`: `[n, d_input]`;
/// - `weight`: `[d_input, d_output]`, Burn's `Linear` layout;
/// - `packed`: the same weight's panels, packed at the first call and read by every later
///   one, so it must stay with this weight (a [`crate::step_linear::StepLinear`] keeps
///   both).
///
/// gemm packs its right operand again at every product, and at a step's few rows that
/// costs as much as the product (bench/RESULTS.md); the panels are packed once. In training
/// the backward product `d x = d y W^T` reads panels of `W^T`, and `d W = x^T d y` panels of
/// `d y` (a step's few rows, packed in each backward step).
pub fn step_product<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    packed: &PackedWeight,
) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        if !on_flex::<B>() {
            return None;
        }
        let [_, d_input] = x.dims();
        let [rows, d_output] = weight.dims();
        if rows != d_input || bias.is_some_and(|b| b.dims() != [d_output]) {
            return None;
        }
        on_flex::step_product(x, weight, bias, packed)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, weight, bias, packed);
        None
    }
}

/// A tensor that every step of a pass reads a part of (the embedded words' gates of every
/// step), whose steps add their gradients in place into one sum on `Autodiff<Flex>`,
/// registered once for the tensor (see [`step_rows`]). One per tensor and pass; clones share
/// the sum.
#[derive(Debug, Clone, Default)]
pub struct StepGradient {
    #[cfg(feature = "flex")]
    collector: on_flex::Collector,
}

/// The sums of the gradients of the features and their projection that every attention step
/// of a pass reads ([`attend`]), as [`StepGradient`]s.
#[derive(Debug, Clone, Default)]
pub struct AttendGradients {
    #[cfg(feature = "flex")]
    features: StepGradient,
    #[cfg(feature = "flex")]
    projected: StepGradient,
}

/// Step `t` of the first `rows` rows of `x` `[batch, width, d]`, `[rows, d]`, on flex and
/// `Autodiff<Flex>`, or `None` elsewhere or with `CAPTIONER_FUSED=0` (and for an untracked
/// `x` in training). Burn's `narrow` gives the same values, but in training each step's
/// gradient is then the whole of `x`'s size, zeros but for the step's, added to the others
/// one at a time; here the steps add theirs into `gradient`'s sum in place.
pub fn step_rows<B: Backend>(
    x: &Tensor<B, 3>,
    t: usize,
    rows: usize,
    gradient: &StepGradient,
) -> Option<Tensor<B, 2>> {
    let [batch, width, _] = x.dims();
    assert!(
        t < width && rows <= batch,
        "step {t} of {rows} rows of {:?}",
        x.dims()
    );
    #[cfg(feature = "flex")]
    {
        if !on_flex::<B>() {
            return None;
        }
        on_flex::step_rows(x, t, rows, &gradient.collector)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = gradient;
        None
    }
}

/// A convolution without dilation, `[n, d_output, ho, wo]`, on flex and `Autodiff<Flex>`:
/// without groups, or depthwise (groups as many as channels, one filter a channel). `None`
/// for other groupings, elsewhere, or with `CAPTIONER_FUSED=0`.
///
/// - `x`: `[n, d_input, h, w]`;
/// - `weight`: `[d_output, d_input, kh, kw]`, or `[d_input, 1, kh, kw]` for a depthwise one
///   (the weight's shape says which);
/// - `bias`: `[d_output]`;
/// - `stride`: `[sy, sx]`;
/// - `padding`: `[(top, bottom), (left, right)]` zeros.
///
/// **Without groups**: picture by picture, the input is unrolled into `cols [d_input * kh *
/// kw, ho * wo]` (im2col; a 1x1 convolution of stride 1 without padding reads the input
/// itself) and the output is `weight [d_output, d_input * kh * kw]` times it. In the backward
/// pass `d cols = weight^T d y` is rolled back onto the input's positions, `d weight` is the
/// sum over the pictures of `d y cols^T` (`cols^T` a transposed view; several pictures' `cols`
/// side by side in one product, so that each product's sum is deep) and `d bias` the sum of
/// `d y` over pictures and positions: products of the layer's whole width, where flex's own
/// convolution backward goes through `conv_transpose`, im2col of badly shaped operands and
/// copies (bench/RESULTS.md, row 3). The pictures are split into one run per thread, each
/// run's products on its thread (one picture's products are too thin for gemm to spread over
/// threads); each run sums its own `d weight` and the runs' sums are added in order, so the
/// result does not depend on which thread finishes first. On flex itself (an encoder's forward
/// pass in inference, or caching features) only the forward products run: flex's own
/// convolution spreads each product over the threads (bench/RESULTS.md, rows 2).
///
/// **Depthwise**: each plane is zero-padded and split into its stride's phases, so that each
/// filter tap is one vectorised pass over a contiguous run (see [`kernels::Depthwise`]);
/// flex's own depthwise convolution runs its strided taps one value at a time. Back, `d x`
/// spreads `d y` through the same taps, and `d weight` and `d bias` are summed channel by
/// channel over the pictures in order. Planes and channels are split between threads.
pub fn convolution<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Option<Tensor<B, 4>> {
    #[cfg(feature = "flex")]
    {
        if !on_flex::<B>() || !filters_fit(x, weight, bias, stride, padding) {
            return None;
        }
        let d_input = x.dims()[1];
        match weight.dims() {
            [_, rows, _, _] if rows == d_input => {
                on_flex::convolution(x, weight, bias, stride, padding)
            }
            [filters, 1, _, _] if filters == d_input => {
                on_flex::depthwise(x, weight, bias, stride, padding)
            }
            _ => None,
        }
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, weight, bias, stride, padding);
        None
    }
}

/// Whether filters `weight` `[d_output, rows, kh, kw]` with `bias` `[d_output]` fit the input
/// `x` `[n, channels, h, w]` under `stride` and `padding`: nothing empty, no stride of 0, and
/// each filter inside the padded input. (Which `rows` fit `channels` is [`convolution`]'s.)
#[cfg(feature = "flex")]
fn filters_fit<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> bool {
    let [_, _, h, w] = x.dims();
    let [d_output, _, kh, kw] = weight.dims();
    let [(top, bottom), (left, right)] = padding;
    !x.dims().contains(&0)
        && !weight.dims().contains(&0)
        && !stride.contains(&0)
        && h + top + bottom >= kh
        && w + left + right >= kw
        && bias.is_none_or(|b| b.dims() == [d_output])
}

mod kernels;
#[cfg(feature = "flex")]
mod on_flex;
pub mod panels;
#[cfg(all(test, feature = "flex"))]
mod test_support;

#[cfg(all(test, feature = "flex"))]
pub(crate) use test_support::{assert_same_outputs_and_gradients, relative_gap};

//! The fused operations on flex tensors, one file per operation: each runs its kernel on
//! flex (inference) and records it with its own backward on `Autodiff<Flex>` (training).
//! Here: dispatching between the two, reading and writing flex tensors, the products through
//! gemm that the convolutions use, and recording an operation for autodiff.

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

mod attention;
mod clamp;
mod convolution;
mod depthwise;
mod gate;
mod log_softmax;
mod lstm_cell;
mod products;
mod step_rows;
mod sums;

pub(crate) use attention::attend;
pub(crate) use clamp::clamp;
pub(crate) use convolution::convolution;
pub(crate) use depthwise::depthwise;
pub(crate) use gate::gate;
pub(crate) use log_softmax::log_softmax;
pub(crate) use lstm_cell::lstm_cell;
pub(crate) use products::step_product;
pub(crate) use step_rows::step_rows;
pub use sums::Collector;

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

/// A layer's operation `forward(x, weight, bias)` on the values of its input, weight and
/// bias: run as it is on flex (inference), and on `Autodiff<Flex>` recorded with `backward`,
/// whose state `saved` makes from the input's and the weight's values. `None` on other
/// backends or for tensors that are not `f32`.
fn layer_op<B, O, S, const D: usize>(
    [x, weight]: [&Tensor<B, D>; 2],
    bias: Option<&Tensor<B, 1>>,
    forward: impl Fn(&FlexTensor, &FlexTensor, Option<&[f32]>) -> FlexTensor,
    backward: O,
    saved: impl FnOnce(FlexTensor, FlexTensor) -> S,
) -> Option<Tensor<B, D>>
where
    B: Backend,
    O: Backward<Flex, 2, State = S> + Backward<Flex, 3, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    let y = match cast::<_, FlexTensor>(primitive(x)) {
        Ok(x) => {
            let [xv, wv] = [values(&x)?, values(&cast(primitive(weight)).ok()?)?];
            let bv = match bias {
                Some(b) => Some(values(&cast(primitive(b)).ok()?)?),
                None => None,
            };
            cast(forward(&xv, &wv, bv.as_ref().map(slice))).ok()?
        }
        Err(x) => {
            let x: Ad = cast(x).ok()?;
            let weight: Ad = cast(primitive(weight)).ok()?;
            let (bias, bv) = bias_of(bias)?.unzip();
            let [xv, wv] = [values(&x.primitive)?, values(&weight.primitive)?];
            let run = || forward(&xv, &wv, bv.as_ref().map(slice));
            let state = || saved(xv.clone(), wv.clone());
            cast(record_layer(backward, [&x, &weight], bias, state, run)).ok()?
        }
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(y)))
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

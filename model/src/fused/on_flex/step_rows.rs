//! One step of a sequence, `x[..rows, t]`, whose gradient is added in place into the
//! sequence's ([`super::sums`]).

use std::sync::Arc;

use super::sums::{Collector, GradientSum};
use super::*;

/// `x[..rows, t]` of `x` `[batch, width, d]` (row-major), `[rows, d]`.
fn gather(x: &[f32], [width, d]: [usize; 2], t: usize, rows: usize) -> FlexTensor {
    let mut out = Vec::with_capacity(rows * d);
    for r in 0..rows {
        out.extend_from_slice(&x[(r * width + t) * d..][..d]);
    }
    flex_tensor(out, [rows, d])
}

/// Where the backward adds `d y` `[rows, d]`: the sequence's sum, at step `t`.
#[derive(Debug, Clone)]
struct Saved {
    sum: Arc<GradientSum>,
    dims: [usize; 2],
    t: usize,
    rows: usize,
}

/// Its parent is the sequence's collector, which it registers nothing for: it adds into the
/// collector's sum.
#[derive(Debug)]
struct StepRowsBackward;

impl Backward<Flex, 1> for StepRowsBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let Saved {
            sum,
            dims: [width, d],
            t,
            rows,
        } = ops.state;
        let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
        let d_y = slice(&d_y);
        sum.add(|d_x| {
            for (r, d_y) in d_y.chunks_exact(d).take(rows).enumerate() {
                for (d_x, &g) in d_x[(r * width + t) * d..][..d].iter_mut().zip(d_y) {
                    *d_x += g;
                }
            }
        });
    }
}

pub(crate) fn step_rows<B: Backend>(
    x: &Tensor<B, 3>,
    t: usize,
    rows: usize,
    collector: &Collector,
) -> Option<Tensor<B, 2>> {
    let [_, width, d] = x.dims();
    let joined = match cast::<_, FlexTensor>(primitive(x)) {
        // Inference.
        Ok(x) => cast(gather(slice(&values(&x)?), [width, d], t, rows)).ok()?,
        // Training.
        Err(x) => {
            let x: Ad = cast(x).ok()?;
            let (collected, sum) = collector.parent(&x)?;
            let y = gather(slice(&x.primitive), [width, d], t, rows);
            let saved = Saved {
                sum,
                dims: [width, d],
                t,
                rows,
            };
            let prepared = StepRowsBackward
                .prepare::<NoCheckpointing>([collected.node.clone()])
                .compute_bound()
                .stateful();
            cast(record(prepared, || saved, || y)).ok()?
        }
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(joined)))
}

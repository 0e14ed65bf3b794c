//! Log-softmax over the rows of a matrix on flex, in one pass per row, and back.

use super::*;

/// `[n, width]`: each row of `x` `[n, width]` minus the log of its sum of exponentials.
pub(crate) fn log_softmax<B: Backend>(x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    dispatch::<B, 1>(
        [primitive(x)],
        |[x]| {
            let x = values(&x)?;
            let [n, width] = x.shape().dims();
            Some(flex_tensor(
                kernels::log_softmax(width, slice(&x)),
                [n, width],
            ))
        },
        |[x]| log_softmax_training(x),
    )
}

/// What the backward pass reads: the output, `[n, width]`.
#[derive(Debug, Clone)]
struct Saved {
    y: FlexTensor,
}

#[derive(Debug)]
struct LogSoftmaxBackward;

impl Backward<Flex, 1> for LogSoftmaxBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let y = ops.state.y;
        let [node] = ops.parents;
        let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
        if let Some(node) = node {
            let [n, width] = y.shape().dims();
            let d_x = kernels::log_softmax_backward(width, slice(&y), slice(&d_y));
            grads.register::<Flex>(node.id, flex_tensor(d_x, [n, width]));
        }
    }
}

fn log_softmax_training(x: Ad) -> Option<Ad> {
    let values = values(&x.primitive)?;
    let [n, width] = values.shape().dims();
    let y = flex_tensor(kernels::log_softmax(width, slice(&values)), [n, width]);
    let kind = LogSoftmaxBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    Some(match kind {
        OpsKind::Tracked(prep) => prep.finish(Saved { y: y.clone() }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    })
}

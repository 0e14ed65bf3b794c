//! The attention's gate, `x sigmoid(g)` element by element on flex, in one pass, and back.

use super::*;

/// `x sigmoid(g)`, of `x`'s shape.
pub(crate) fn gate<B: Backend>(x: &Tensor<B, 2>, g: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    dispatch::<B, 2>(
        [primitive(x), primitive(g)],
        |[x, g]| {
            let [x, g] = [values(&x)?, values(&g)?];
            let shape: [usize; 2] = x.shape().dims();
            Some(flex_tensor(kernels::gate(slice(&x), slice(&g)), shape))
        },
        |[x, g]| gate_training(x, g),
    )
}

/// What the backward pass reads: both inputs.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    g: FlexTensor,
}

#[derive(Debug)]
struct GateBackward;

impl Backward<Flex, 2> for GateBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let Saved { x, g } = ops.state;
        let [x_node, g_node] = ops.parents;
        let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
        let shape: [usize; 2] = x.shape().dims();
        let (d_x, d_g) = kernels::gate_backward(slice(&x), slice(&g), slice(&d_y));
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_tensor(d_x, shape));
        }
        if let Some(node) = g_node {
            grads.register::<Flex>(node.id, flex_tensor(d_g, shape));
        }
    }
}

fn gate_training(x: Ad, g: Ad) -> Option<Ad> {
    let [x_values, g_values] = [values(&x.primitive)?, values(&g.primitive)?];
    let shape: [usize; 2] = x_values.shape().dims();
    let y = flex_tensor(kernels::gate(slice(&x_values), slice(&g_values)), shape);
    let kind = GateBackward
        .prepare::<NoCheckpointing>([x.node.clone(), g.node.clone()])
        .compute_bound()
        .stateful();
    Some(match kind {
        OpsKind::Tracked(prep) => prep.finish(
            Saved {
                x: x_values,
                g: g_values,
            },
            y,
        ),
        OpsKind::UnTracked(prep) => prep.finish(y),
    })
}

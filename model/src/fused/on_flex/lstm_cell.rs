//! The LSTM cell's nonlinearities and state update on flex, in one pass per row, and back.

use super::*;

/// `[n, 2 hidden]`: the new hidden state, then the new cell state.
pub(crate) fn lstm_cell<B: Backend>(
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

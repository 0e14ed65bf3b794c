//! Depthwise convolutions on flex (EfficientNet's), forward and back, planes split between
//! threads.

use super::*;

use kernels::Depthwise;

/// What the backward pass reads: the input `[n, c, h, w]` and the filters `[c, kh * kw]`.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    weight: FlexTensor,
    dims: Depthwise,
}

/// Parents: the input, the filters, and the bias where the convolution has one.
#[derive(Debug)]
struct DepthwiseBackward;

impl<const N: usize> Backward<Flex, N> for DepthwiseBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let Saved { x, weight, dims } = ops.state;
        let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
        let x_shape: [usize; 4] = x.shape().dims();
        let w_shape: [usize; 4] = weight.shape().dims();
        let mut parents = ops.parents.into_iter();
        let (x_node, w_node) = (parents.next().flatten(), parents.next().flatten());
        let b_node = parents.next().flatten();
        let (d_x, d_w, d_b) = kernels::depthwise_backward(
            dims,
            x_shape[1],
            (slice(&x), slice(&weight)),
            slice(&d_y),
            [x_node.is_some(), w_node.is_some() || b_node.is_some()],
        );
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_tensor(d_x, x_shape));
        }
        if let Some(node) = w_node {
            grads.register::<Flex>(node.id, flex_tensor(d_w, w_shape));
        }
        if let Some(node) = b_node {
            grads.register::<Flex>(node.id, flex_tensor(d_b, [x_shape[1]]));
        }
    }
}

/// The sizes of `x`'s planes under filters `weight` `[c, 1, kh, kw]`.
fn depthwise_dims(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Depthwise {
    let [_, _, h, w] = x.shape().dims();
    let [_, _, kh, kw] = weight.shape().dims();
    Depthwise {
        size: [h, w],
        kernel: [kh, kw],
        stride,
        padding,
    }
}

/// `[n, c, ho, wo]`.
fn forward(
    dims: Depthwise,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&[f32]>,
) -> FlexTensor {
    let [n, c, _, _] = x.shape().dims();
    let [ho, wo] = dims.out();
    let y = kernels::depthwise(dims, c, slice(x), slice(weight), bias);
    flex_tensor(y, [n, c, ho, wo])
}

pub(crate) fn depthwise<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Option<Tensor<B, 4>> {
    let dims = |x: &FlexTensor, w: &FlexTensor| depthwise_dims(x, w, stride, padding);
    layer_op(
        [x, weight],
        bias,
        |x, w, b| forward(dims(x, w), x, w, b),
        DepthwiseBackward,
        |x, weight| Saved {
            dims: dims(&x, &weight),
            x,
            weight,
        },
    )
}

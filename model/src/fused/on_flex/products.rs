//! The decoder step's products in training on flex: `x W + b` forward, and back `d x` from a
//! row-major copy of `W^T` made once per batch.

use super::*;

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

pub(crate) fn step_product<B: Backend>(
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

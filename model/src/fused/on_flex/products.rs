//! The decoder step's products on flex by weights packed once into panels: `x W + b`
//! forward, and in training `d x` from panels of `W^T` and `d W` from panels of `d y`.

use std::sync::Arc;

use super::super::panels::Panels;
use super::super::PackedWeight;
use super::sums::GradientSum;
use super::*;

/// What the backward pass of [`step_product`] reads: the input `[n, d_input]`, `W^T`'s
/// panels, and the sum that `d W` is added into when the weight is read through its
/// collector (the weight's parent is then the collector).
#[derive(Debug, Clone)]
struct ProductSaved {
    x: FlexTensor,
    transposed: Arc<Panels>,
    weight_sum: Option<Arc<GradientSum>>,
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
            weight_sum,
            n,
            d_input,
            d_output,
        } = ops.state;
        let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
        let d_y = slice(&d_y);
        let mut parents = ops.parents.into_iter();
        if let Some(node) = parents.next().flatten() {
            // d x = d y W^T.
            let d_x = transposed.product(d_y, n, None);
            grads.register::<Flex>(node.id, flex_tensor(d_x, [n, d_input]));
        }
        if let Some(node) = parents.next().flatten() {
            // d W = x^T d y: d y packed (it is `[n, d_output]`, n a step's few rows), and
            // x read as its transpose.
            let d_y = Panels::pack(d_y, [n, d_output], [d_output, 1]);
            let x = slice(&x);
            match weight_sum {
                Some(sum) => sum.add(|d_w| d_y.add_product_strided(x, d_input, [1, d_input], d_w)),
                None => {
                    let d_w = d_y.product_strided(x, d_input, [1, d_input], None);
                    grads.register::<Flex>(node.id, flex_tensor(d_w, [d_input, d_output]));
                }
            }
        }
        if let Some(node) = parents.next().flatten() {
            // d b = the sum of d y's rows.
            let d_b = kernels::sum_rows(d_y, d_output);
            grads.register::<Flex>(node.id, flex_tensor(d_b, [d_output]));
        }
    }
}

/// The panels in `slot`, packed from `weight` `[d_input, d_output]` (row-major) the first
/// time: of `W` itself, or of `W^T` when `transposed`.
fn panels(
    slot: &std::sync::OnceLock<Arc<Panels>>,
    weight: &[f32],
    [d_input, d_output]: [usize; 2],
    transposed: bool,
) -> Option<Arc<Panels>> {
    let panels = slot.get_or_init(|| {
        Arc::new(if transposed {
            Panels::pack(weight, [d_output, d_input], [1, d_output])
        } else {
            Panels::pack(weight, [d_input, d_output], [d_output, 1])
        })
    });
    let dims = if transposed {
        [d_output, d_input]
    } else {
        [d_input, d_output]
    };
    (panels.dims() == dims).then(|| panels.clone())
}

pub(crate) fn step_product<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    packed: &PackedWeight,
) -> Option<Tensor<B, 2>> {
    let forward = |xv: &FlexTensor, wv: &FlexTensor, bv: Option<&FlexTensor>| {
        let [n, d_input] = xv.shape().dims();
        let d_output = wv.shape().dims::<2>()[1];
        let w = panels(&packed.forward, slice(wv), [d_input, d_output], false)?;
        let y = w.product(slice(xv), n, bv.map(slice));
        Some(flex_tensor(y, [n, d_output]))
    };
    let joined = match cast::<_, FlexTensor>(primitive(x)) {
        // Inference.
        Ok(x) => {
            let weight: FlexTensor = cast(primitive(weight)).ok()?;
            let bias = match bias {
                Some(b) => Some(values(&cast::<_, FlexTensor>(primitive(b)).ok()?)?),
                None => None,
            };
            let y = forward(&values(&x)?, &values(&weight)?, bias.as_ref())?;
            cast(y).ok()?
        }
        // Training.
        Err(x) => {
            let x: Ad = cast(x).ok()?;
            let weight: Ad = cast(primitive(weight)).ok()?;
            let (bias, bv) = bias_of(bias)?.unzip();
            let [xv, wv] = [values(&x.primitive)?, values(&weight.primitive)?];
            let [n, d_input] = xv.shape().dims();
            let d_output = wv.shape().dims::<2>()[1];
            let y = forward(&xv, &wv, bv.as_ref())?;
            let transposed = panels(&packed.backward, slice(&wv), [d_input, d_output], true)?;
            let (weight, weight_sum) = packed.gradient.read(weight);
            let saved = || ProductSaved {
                x: xv.clone(),
                transposed,
                weight_sum,
                n,
                d_input,
                d_output,
            };
            let y = record_layer(ProductBackward, [&x, &weight], bias, saved, || y);
            cast(y).ok()?
        }
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(joined)))
}

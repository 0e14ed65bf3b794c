//! The attention step on flex: scores, softmax and context in one pass per row, and back.

use super::*;

/// `[n, e + p]`: the context, then alpha.
pub(crate) fn attend<B: Backend>(
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

//! The attention step on flex: scores, softmax and context in one pass per row, and back.

use std::sync::Arc;

use super::super::AttendGradients;
use super::sums::GradientSum;
use super::*;

/// `[n, e + p]`: the context, then alpha.
pub(crate) fn attend<B: Backend>(
    features: &Tensor<B, 3>,
    projected: &Tensor<B, 3>,
    query: &Tensor<B, 2>,
    score: &Tensor<B, 2>,
    gradients: &AttendGradients,
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
        |[f, p, q, w]| training(f, p, q, w, gradients),
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

/// What the backward pass reads, and the sums it adds the gradients of the projection and
/// the features into when they are read through their collectors (which are then their
/// parents).
#[derive(Debug, Clone)]
struct Saved {
    features: FlexTensor,
    out: FlexTensor,
    energy: FlexTensor,
    w: FlexTensor,
    dims: Dims,
    projected_sum: Option<Arc<GradientSum>>,
    features_sum: Option<Arc<GradientSum>>,
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
            projected_sum,
            features_sum,
        } = ops.state;
        let [projected_node, query_node, w_node, features_node] = ops.parents;
        let d_out = grads.consume::<Flex>(&ops.node).to_contiguous();
        // Each sum's lock is held while the kernel adds into it.
        let run = |sums: kernels::Sums| {
            kernels::backward(
                d,
                slice(&features),
                slice(&out),
                slice(&energy),
                slice(&w),
                slice(&d_out),
                features_node.is_some(),
                sums,
            )
        };
        let features_sum = features_sum.filter(|_| features_node.is_some());
        let projected_sum = projected_sum.filter(|_| projected_node.is_some());
        let with_features = |projected: Option<&mut [f32]>| match &features_sum {
            Some(sum) => sum.add(|features| {
                run(kernels::Sums {
                    projected,
                    features: Some(features),
                })
            }),
            None => run(kernels::Sums {
                projected,
                features: None,
            }),
        };
        let g = match &projected_sum {
            Some(sum) => sum.add(|projected| with_features(Some(projected))),
            None => with_features(None),
        };
        if let (Some(node), None) = (projected_node, &projected_sum) {
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
    gradients: &AttendGradients,
) -> Option<FloatTensor<Autodiff<Flex>>> {
    let [f, p, q, wv] = [
        values(&features.primitive)?,
        values(&projected.primitive)?,
        values(&query.primitive)?,
        values(&w.primitive)?,
    ];
    let d = dims(&f, &p);
    let (projected, projected_sum) = gradients.projected.collector.read(projected);
    let (features, features_sum) = gradients.features.collector.read(features);
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
                projected_sum,
                features_sum,
            };
            prep.finish(saved, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(false).0),
    })
}

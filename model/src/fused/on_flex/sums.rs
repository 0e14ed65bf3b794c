//! Gradients that the steps of a pass add in place, for tensors every step reads.
//!
//! A tensor read at every step of a teacher-forced pass (a step layer's weight, the embedded
//! words' gates) gets one gradient per step from Burn's autodiff, each a fresh tensor of the
//! whole size, added to the others one at a time: for the LSTM's `[1792, 2048]` weight that
//! is 14.7 MB written and added again at every step. Here the tensor is read through a
//! *collector*, an operation that passes it on unchanged; the steps' operations name the
//! collector as their parent and add their gradients into its [`GradientSum`] in place, and
//! the collector's backward, which Burn runs after every step that reads it (an operation
//! runs after all operations on its output), registers the sum once for the tensor.

use std::sync::{Arc, Mutex, OnceLock};

use super::*;

/// A gradient that several operations add into, zeros until the first adds.
#[derive(Debug)]
pub(crate) struct GradientSum {
    len: usize,
    values: Mutex<Option<Vec<f32>>>,
}

impl GradientSum {
    /// Runs `add` on the sum, `[len]` values, and returns what it returns.
    pub(crate) fn add<R>(&self, add: impl FnOnce(&mut [f32]) -> R) -> R {
        let mut values = self.values.lock().expect("a step's backward panicked");
        add(values.get_or_insert_with(|| vec![0.0; self.len]))
    }

    fn take(&self) -> Option<Vec<f32>> {
        self.values
            .lock()
            .expect("a step's backward panicked")
            .take()
    }
}

/// A tensor read through a collector: the collector's output, whose node the steps name as
/// their parent, the sum they add into, and where the tensor's values lie (to recognise them
/// in a step's input).
#[derive(Debug)]
struct Collected {
    tensor: Ad,
    sum: Arc<GradientSum>,
    values: (usize, usize),
}

/// The collector of one tensor for one pass, made at the first step that reads the tensor;
/// clones share it.
#[derive(Debug, Clone, Default)]
pub struct Collector(Arc<OnceLock<Option<Collected>>>);

/// Where `t`'s values lie: the address of the first and their number.
fn span(t: &FlexTensor) -> Option<(usize, usize)> {
    t.is_contiguous()
        .then(|| t.as_slice::<f32>())
        .flatten()
        .map(|s| (s.as_ptr() as usize, s.len()))
}

impl Collector {
    /// The tensor whose node an operation names as `x`'s parent, and the sum its gradient goes
    /// into: the collector's, made from `x` the first time, when `x` is tracked and row-major. `x`
    /// may be the collected tensor or its first rows (a view of the same values); for any
    /// other tensor, or an untracked one, `None`, and the operation registers its gradient
    /// as usual.
    pub(crate) fn parent(&self, x: &Ad) -> Option<(Ad, Arc<GradientSum>)> {
        let collected = self.0.get_or_init(|| {
            let values = span(&x.primitive)?;
            let sum = Arc::new(GradientSum {
                len: values.1,
                values: Mutex::new(None),
            });
            let state = (sum.clone(), x.primitive.shape().clone());
            match CollectBackward
                .prepare::<NoCheckpointing>([x.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let tensor = prep.finish(state, x.primitive.clone());
                    Some(Collected {
                        tensor,
                        sum,
                        values,
                    })
                }
                OpsKind::UnTracked(_) => None,
            }
        });
        let collected = collected.as_ref()?;
        let (start, len) = span(&x.primitive)?;
        (start == collected.values.0 && len <= collected.values.1)
            .then(|| (collected.tensor.clone(), collected.sum.clone()))
    }

    /// The tensor an operation names as `x`'s parent and the sum its gradient goes into, as
    /// [`Self::parent`] gives them, or `x` itself and no sum.
    pub(crate) fn read(&self, x: Ad) -> (Ad, Option<Arc<GradientSum>>) {
        match self.parent(&x) {
            Some((collected, sum)) => (collected, Some(sum)),
            None => (x, None),
        }
    }
}

/// Registers the sum of the steps' gradients for the collected tensor.
#[derive(Debug)]
struct CollectBackward;

impl Backward<Flex, 1> for CollectBackward {
    type State = (Arc<GradientSum>, burn::tensor::Shape);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (sum, shape) = ops.state;
        let [parent] = ops.parents;
        if let (Some(node), Some(values)) = (parent, sum.take()) {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(values, shape)),
            );
        }
    }
}

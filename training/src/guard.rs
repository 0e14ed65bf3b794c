//! Stopping a run cleanly: a loss that is not a number, or the user asking to stop.
//!
//! A NaN or infinite loss is seen by [`FiniteLoss`], a training metric, on burn-train's
//! metric thread: it records where ([`Fault`]) and asks the training loop to stop after the
//! step it is in (burn-train's `Interrupter`). The weights are already spoiled by then, so no
//! checkpoint may be written after it: [`Guarded`] wraps the run's checkpointing strategy and
//! saves nothing once a fault is recorded. The fault is recorded before the epoch's validation
//! scores (the metric thread handles a training epoch's items before its validation ones, and
//! the best-epoch strategy inside waits for those), so an epoch whose last step went wrong is
//! not checkpointed either.

use std::sync::{Arc, Mutex};

use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use burn::train::metric::{Metric, MetricAttributes, MetricMetadata, MetricName, SerializedEntry};
use burn::train::Interrupter;
use captioner_model::StepLoss;

/// Where the loss first stopped being a finite number, once it has.
#[derive(Debug, Clone, Default)]
pub struct Fault(Arc<Mutex<Option<String>>>);

impl Fault {
    /// What went wrong, if anything.
    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("fault lock").clone()
    }

    fn record(&self, what: String) -> bool {
        let mut fault = self.0.lock().expect("fault lock");
        let first = fault.is_none();
        if first {
            *fault = Some(what);
        }
        first
    }
}

/// A training metric that watches the loss of every step and stops the run at the first one
/// that is NaN or infinite. Shows nothing on the dashboard while the loss is finite.
#[derive(Clone)]
pub struct FiniteLoss {
    fault: Fault,
    interrupter: Interrupter,
    name: MetricName,
    /// A run resumed mid-epoch: that epoch, and its steps done before (burn-train counts
    /// the epoch's steps from 1 again).
    resumed_at: (usize, usize),
}

impl FiniteLoss {
    /// Records into `fault` and stops through `interrupter`.
    pub fn new(fault: Fault, interrupter: Interrupter) -> Self {
        Self {
            fault,
            interrupter,
            name: Arc::new("Loss is finite".to_string()),
            resumed_at: (0, 0),
        }
    }

    /// In a run resumed at step `steps` of `epoch`, names the steps of that epoch as an
    /// unbroken run would.
    pub fn resumed_at(self, epoch: usize, steps: usize) -> Self {
        Self {
            resumed_at: (epoch, steps),
            ..self
        }
    }
}

impl Metric for FiniteLoss {
    type Input = StepLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        Some("Stops the run at the first NaN or infinite loss".into())
    }

    fn attributes(&self) -> MetricAttributes {
        MetricAttributes::None
    }

    fn update(&mut self, loss: &StepLoss, metadata: &MetricMetadata) -> SerializedEntry {
        if !loss.0.is_finite() {
            let epoch = metadata.global_progress.items_processed;
            let mut step = metadata.iteration.unwrap_or_default();
            if epoch == self.resumed_at.0 {
                step += self.resumed_at.1;
            }
            let what = format!("the loss became {} at epoch {epoch}, step {step}", loss.0);
            if self.fault.record(what.clone()) {
                self.interrupter.stop(Some(&what));
            }
        }
        let shown = if loss.0.is_finite() { "yes" } else { "no" };
        SerializedEntry {
            formatted: shown.to_string(),
            serialized: shown.to_string(),
        }
    }

    fn clear(&mut self) {}
}

/// A checkpointing strategy that saves and deletes nothing once a fault is recorded: the last
/// good checkpoint stays the last one.
pub struct Guarded<S> {
    inner: S,
    fault: Fault,
}

impl<S> Guarded<S> {
    /// `inner`, until `fault` is recorded.
    pub fn new(inner: S, fault: Fault) -> Self {
        Self { inner, fault }
    }
}

impl<S: CheckpointingStrategy> CheckpointingStrategy for Guarded<S> {
    fn checkpointing(
        &mut self,
        epoch: usize,
        collector: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        let actions = self.inner.checkpointing(epoch, collector);
        if self.fault.get().is_some() {
            return Vec::new();
        }
        actions
    }
}

//! A plain-text progress renderer for `burn-train`, used when stdout is not a terminal (CI,
//! logs, pipes): one line every few seconds and one at the end of each epoch, with the latest
//! value of every metric, instead of the dashboard.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

/// Prints training progress as plain lines.
pub struct PlainRenderer {
    names: HashMap<MetricId, String>,
    train: Vec<(MetricId, String)>,
    valid: Vec<(MetricId, String)>,
    every: Duration,
    last: Instant,
}

impl PlainRenderer {
    /// A renderer that prints at most one progress line per `every` within an epoch.
    pub fn new(every: Duration) -> Self {
        Self {
            names: HashMap::new(),
            train: Vec::new(),
            valid: Vec::new(),
            every,
            last: Instant::now(),
        }
    }

    fn store(values: &mut Vec<(MetricId, String)>, state: MetricState) {
        let entry = match state {
            MetricState::Generic(e) | MetricState::Numeric(e, _) => e,
        };
        let formatted = entry.serialized_entry.formatted;
        match values.iter_mut().find(|(id, _)| *id == entry.metric_id) {
            Some(slot) => slot.1 = formatted,
            None => values.push((entry.metric_id, formatted)),
        }
    }

    fn print(&mut self, split: &str, item: &TrainingProgress, values: &[(MetricId, String)]) {
        let within = item.progress.as_ref();
        let epoch_done = within.is_some_and(|p| p.items_processed >= p.items_total);
        if !epoch_done && self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let position = within
            .map(|p| format!(" {}/{}", p.items_processed, p.items_total))
            .unwrap_or_default();
        let metrics: Vec<String> = values
            .iter()
            .map(|(id, v)| {
                let name = self.names.get(id).map(String::as_str).unwrap_or("?");
                format!("{name}: {}", v.trim())
            })
            .collect();
        println!(
            "[{split}] epoch {}/{}{position}  {}",
            item.global_progress.items_processed,
            item.global_progress.items_total,
            metrics.join("  ")
        );
    }
}

impl MetricsRendererTraining for PlainRenderer {
    fn update_train(&mut self, state: MetricState) {
        Self::store(&mut self.train, state);
    }

    fn update_valid(&mut self, state: MetricState) {
        Self::store(&mut self.valid, state);
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let values = std::mem::take(&mut self.train);
        self.print("train", &item, &values);
        self.train = values;
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let values = std::mem::take(&mut self.valid);
        self.print("valid", &item, &values);
        self.valid = values;
    }
}

impl MetricsRendererEvaluation for PlainRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        Self::store(&mut self.valid, state);
    }

    fn render_test(&mut self, item: EvaluationProgress, _: Vec<ProgressType>) {
        let values = std::mem::take(&mut self.valid);
        self.print("test", &TrainingProgress::from(&item), &values);
        self.valid = values;
    }
}

impl MetricsRenderer for PlainRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}

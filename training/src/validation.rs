//! The validation metric that is the real thing: every epoch the validation images (or a fixed
//! sample of them) are captioned by beam search in the validation steps, once, and the
//! captions are scored once, at the epoch's end, with corpus BLEU-1..4, ROUGE-L and CIDEr-D
//! against all of their references ([`CaptionScoreMetric`], which shows the score that picks
//! the best epoch; [`RecordedScoreMetric`] shows another of the same scores). The scores of
//! every epoch go into the run's [`ValidationHistory`], from which the best checkpoint is
//! kept ([`BestCheckpoint`]), the learning rate decays on plateaus
//! ([`crate::schedule::PlateauDecay`]) and a long plateau stops the run ([`PlateauStop`]).
//!
//! Why not burn-train's `MetricCheckpointingStrategy` and `MetricEarlyStoppingStrategy`: in
//! burn-train 0.21 metrics are processed on a thread of their own, and nothing makes the
//! training thread wait for the last validation batch's metrics before it checkpoints and
//! asks whether to stop (a barrier came upstream after 0.21). Reading the event store then
//! may miss the epoch, or cache its aggregate before its one weighted entry arrives (a
//! corpus score is not a mean of batch scores, so only the last entry carries it); and a
//! resumed run's store numbers its epochs from 1 again. So the history is the contract
//! between the two threads, and it is explicit: the scoring metric records each epoch on
//! the metric thread, and [`ValidationHistory::wait_for`] is the barrier the strategies
//! pass on the training thread (bounded: after [`WAIT_FOR_SCORES`] they go on without the
//! epoch, with a warning). The history is saved with the scheduler's checkpoint, so a
//! resumed run keeps its best epoch and plateaus.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use burn::train::EarlyStoppingStrategy;
use captioner_datasets::Vocab;
use captioner_model::ImageCaption;
use serde::{Deserialize, Serialize};

use crate::config::{SelectBy, ValidationConfig};
use crate::metrics::bleu::corpus_bleu;
use crate::metrics::cider::cider_d;
use crate::metrics::{coco_scores, scoring_text, CocoScores};

/// How long the training thread waits for an epoch's scores before going on without them.
const WAIT_FOR_SCORES: Duration = Duration::from_secs(600);

/// The ids of the `sample` images (all when `None` or at least `total`) evenly spread over
/// `0..total`: the validation images captioned every epoch.
pub fn caption_sample(total: usize, sample: Option<usize>) -> HashSet<usize> {
    match sample {
        Some(n) if n < total => (0..n).map(|k| k * total / n).collect(),
        _ => (0..total).collect(),
    }
}

/// One epoch's validation scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochScores {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Images captioned.
    pub images: usize,
    /// Their scores against their references.
    pub scores: CocoScores,
}

impl EpochScores {
    /// The score that `select_by` names.
    pub fn select(&self, select_by: SelectBy) -> f64 {
        select_by.of(&self.scores)
    }
}

#[derive(Debug, Default)]
struct History {
    /// Every finished validation epoch; `None` when it captioned nothing.
    epochs: BTreeMap<usize, Option<EpochScores>>,
}

/// The validation scores of every epoch so far, shared by the metric that records them and
/// the strategies that act on them; saved with the learning-rate scheduler's checkpoint so
/// that a resumed run knows its best epoch.
#[derive(Debug, Clone)]
pub struct ValidationHistory {
    inner: Arc<(Mutex<History>, Condvar)>,
    rule: ValidationConfig,
}

impl ValidationHistory {
    /// An empty history judged by `rule`.
    pub fn new(rule: ValidationConfig) -> Self {
        Self {
            inner: Arc::default(),
            rule,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the scores of `epoch` (none when it captioned nothing).
    pub fn record(&self, epoch: usize, scores: Option<EpochScores>) {
        self.lock().epochs.insert(epoch, scores);
        self.inner.1.notify_all();
    }

    /// Waits until `epoch` is recorded, at most [`WAIT_FOR_SCORES`]; false on time-out.
    pub fn wait_for(&self, epoch: usize) -> bool {
        let (lock, ready) = &*self.inner;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = ready
            .wait_timeout_while(guard, WAIT_FOR_SCORES, |h| !h.epochs.contains_key(&epoch))
            .unwrap_or_else(|e| e.into_inner());
        let found = guard.epochs.contains_key(&epoch);
        if !found {
            eprintln!("warning: no validation scores for epoch {epoch}; going on without them");
        }
        found
    }

    /// The scores of `epoch`, if it is recorded and captioned something (never waits).
    pub fn scores_of(&self, epoch: usize) -> Option<EpochScores> {
        self.lock().epochs.get(&epoch).copied().flatten()
    }

    /// The scores of every epoch so far, in order.
    pub fn epochs(&self) -> Vec<EpochScores> {
        self.lock().epochs.values().flatten().copied().collect()
    }

    /// The epoch with the highest score (the earliest of equals).
    pub fn best(&self) -> Option<EpochScores> {
        let by = self.rule.select_by;
        self.epochs()
            .into_iter()
            .fold(None, |best: Option<EpochScores>, e| match best {
                Some(b) if b.select(by) >= e.select(by) => Some(b),
                _ => Some(e),
            })
    }

    /// Walks the epochs up to `epoch`: (epochs since the best, plateau decays so far).
    fn plateau(&self, epoch: usize) -> (usize, i32) {
        let by = self.rule.select_by;
        let (mut best, mut since, mut decays) = (f64::NEG_INFINITY, 0, 0);
        for e in self.epochs().iter().filter(|e| e.epoch <= epoch) {
            if e.select(by) > best {
                best = e.select(by);
                since = 0;
            } else {
                since += 1;
                let patience = self.rule.lr_decay_patience;
                if patience > 0 && since % patience == 0 {
                    decays += 1;
                }
            }
        }
        (since, decays)
    }

    /// The factor plateaus have multiplied the learning rate by.
    pub fn lr_factor(&self) -> f64 {
        let (_, decays) = self.plateau(usize::MAX);
        self.rule.lr_decay_factor.powi(decays)
    }

    pub(crate) fn to_json(&self) -> String {
        let epochs: Vec<(usize, Option<EpochScores>)> =
            self.lock().epochs.iter().map(|(k, v)| (*k, *v)).collect();
        serde_json::to_string(&epochs).expect("scores serialise")
    }

    pub(crate) fn restore(&self, json: &str) {
        match serde_json::from_str::<Vec<(usize, Option<EpochScores>)>>(json) {
            Ok(epochs) => {
                self.lock().epochs = epochs.into_iter().collect();
                self.inner.1.notify_all();
            }
            Err(e) => eprintln!(
                "warning: the checkpoint's validation history is unreadable ({e}); the best \
                 epoch is chosen among the epochs from here on"
            ),
        }
    }
}

/// How often the running score of the captions so far is recomputed within an epoch (it is
/// a corpus score over all of them, so every batch would cost more as the epoch goes on).
const RUNNING_SCORE_EVERY: Duration = Duration::from_secs(2);

/// The captions searched during validation, scored against all references of each image:
/// within an epoch it shows `shown` (BLEU-4 or CIDEr-D) of the captions so far; at the epoch's
/// end it scores all of them once (BLEU-1..4, ROUGE-L, CIDEr-D), records the scores in the
/// run's [`ValidationHistory`], and its epoch value (what burn-train's summary and logs
/// hold) is `shown` of all of them.
#[derive(Clone)]
pub struct CaptionScoreMetric {
    shown: SelectBy,
    name: MetricName,
    vocab: Arc<Vocab>,
    references: Arc<Vec<Vec<String>>>,
    history: ValidationHistory,
    captions: BTreeMap<usize, String>,
    epoch: usize,
    recorded: bool,
    current: f64,
    refreshed: Option<Instant>,
}

/// The name of a validation score on the dashboard.
fn score_name(score: SelectBy, beam_size: usize) -> MetricName {
    Arc::new(format!("{} (beam {beam_size})", score.label()))
}

/// The epoch's value of a metric that only its last entry carries: burn-train's epoch value
/// is the count-weighted mean of the entries, so the others weigh nothing.
fn last_entry_only(value: f64, last: bool) -> NumericEntry {
    NumericEntry::Aggregated {
        aggregated_value: if last { value } else { 0.0 },
        count: usize::from(last),
    }
}

impl CaptionScoreMetric {
    /// Scores captions (word ids of `vocab`) of image `i` against `references[i]` (tokenised,
    /// joined by spaces), showing `shown` and recording each epoch's scores in `history`.
    pub fn new(
        shown: SelectBy,
        beam_size: usize,
        vocab: Arc<Vocab>,
        references: Arc<Vec<Vec<String>>>,
        history: ValidationHistory,
    ) -> Self {
        Self {
            shown,
            name: score_name(shown, beam_size),
            vocab,
            references,
            history,
            captions: BTreeMap::new(),
            epoch: 0,
            recorded: false,
            current: 0.0,
            refreshed: None,
        }
    }

    /// The captions so far and their references, paired.
    fn pairs(&self) -> (Vec<String>, Vec<Vec<String>>) {
        self.captions
            .iter()
            .map(|(id, caption)| (caption.clone(), self.references[*id].clone()))
            .unzip()
    }

    /// The shown score of the captions so far, computed alone (the running value; the other
    /// scores wait for the epoch's end).
    fn running_score(&self) -> f64 {
        if self.captions.is_empty() {
            return 0.0;
        }
        let (candidates, references) = self.pairs();
        match self.shown {
            SelectBy::Bleu4 => corpus_bleu(&candidates, &references)[3],
            SelectBy::Cider => cider_d(&candidates, &references),
        }
    }

    /// Scores the epoch's captions and records them, once per epoch.
    fn finish_epoch(&mut self) -> Option<CocoScores> {
        if self.recorded {
            return self.history.scores_of(self.epoch).map(|e| e.scores);
        }
        self.recorded = true;
        let scores = (!self.captions.is_empty()).then(|| {
            let (candidates, references) = self.pairs();
            coco_scores(&candidates, &references)
        });
        self.history.record(
            self.epoch,
            scores.map(|scores| EpochScores {
                epoch: self.epoch,
                images: self.captions.len(),
                scores,
            }),
        );
        scores
    }
}

impl Metric for CaptionScoreMetric {
    type Input = Vec<ImageCaption>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        Some("Corpus score of the validation captions found by beam search".into())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        captions: &Vec<ImageCaption>,
        metadata: &MetricMetadata,
    ) -> SerializedEntry {
        self.epoch = metadata.global_progress.items_processed;
        for caption in captions {
            // Scored as `eval` scores a caption: its text through the scoring tokenizer.
            let words = scoring_text(&self.vocab.decode(&caption.tokens));
            self.captions.insert(caption.image_id, words);
        }
        let done = metadata.progress.items_processed >= metadata.progress.items_total;
        if done {
            let scores = self.finish_epoch();
            self.current = scores.map(|s| self.shown.of(&s)).unwrap_or(0.0);
        } else if self
            .refreshed
            .is_none_or(|at| at.elapsed() >= RUNNING_SCORE_EVERY)
        {
            self.current = self.running_score();
            self.refreshed = Some(Instant::now());
        }
        let formatted = format!("{:.4} ({} images)", self.current, self.captions.len());
        SerializedEntry::new(formatted, last_entry_only(self.current, done).serialize())
    }

    fn clear(&mut self) {
        self.finish_epoch();
        self.captions.clear();
        self.recorded = false;
        self.current = 0.0;
        self.refreshed = None;
    }
}

impl Numeric for CaptionScoreMetric {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }
}

/// Another score of the epoch's validation captions (CIDEr-D beside a BLEU-4 that picks the
/// best epoch, or the reverse), read from the [`ValidationHistory`] that the
/// [`CaptionScoreMetric`] registered before it recorded on the same batch: shown at the
/// epoch's end, with no captioning or scoring of its own.
#[derive(Clone)]
pub struct RecordedScoreMetric {
    score: SelectBy,
    name: MetricName,
    history: ValidationHistory,
    current: Option<f64>,
}

impl RecordedScoreMetric {
    /// Shows `score` of each epoch recorded in `history`.
    pub fn new(score: SelectBy, beam_size: usize, history: ValidationHistory) -> Self {
        Self {
            score,
            name: score_name(score, beam_size),
            history,
            current: None,
        }
    }
}

impl Metric for RecordedScoreMetric {
    type Input = Vec<ImageCaption>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        Some("Corpus score of the validation captions, at the end of each epoch".into())
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }

    fn update(&mut self, _: &Vec<ImageCaption>, metadata: &MetricMetadata) -> SerializedEntry {
        let done = metadata.progress.items_processed >= metadata.progress.items_total;
        if done {
            let epoch = metadata.global_progress.items_processed;
            self.current = self
                .history
                .scores_of(epoch)
                .map(|e| self.score.of(&e.scores));
        }
        let formatted = match (done, self.current) {
            (true, Some(value)) => format!("{value:.4}"),
            (true, None) => "no captions".into(),
            (false, _) => "at the epoch's end".into(),
        };
        let value = self.current.unwrap_or(0.0);
        SerializedEntry::new(formatted, last_entry_only(value, done).serialize())
    }

    fn clear(&mut self) {
        self.current = None;
    }
}

impl Numeric for RecordedScoreMetric {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current.unwrap_or(0.0))
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.current.unwrap_or(0.0))
    }
}

/// Keeps the checkpoint of the best epoch by the validation score (composed with
/// burn-train's `KeepLastNCheckpoints`, which keeps the latest for resuming).
pub struct BestCheckpoint {
    history: ValidationHistory,
    kept: Option<usize>,
}

impl BestCheckpoint {
    /// Judges epochs by `history`.
    pub fn new(history: ValidationHistory) -> Self {
        Self {
            history,
            kept: None,
        }
    }
}

impl BestCheckpoint {
    /// What to do with the checkpoints once `epoch` is validated.
    fn actions(&mut self, epoch: usize) -> Vec<CheckpointingAction> {
        if !self.history.wait_for(epoch) {
            return Vec::new();
        }
        let Some(best) = self.history.best() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if let Some(kept) = self.kept.filter(|&k| k != best.epoch) {
            actions.push(CheckpointingAction::Delete(kept));
        }
        if best.epoch == epoch {
            actions.push(CheckpointingAction::Save);
        }
        self.kept = Some(best.epoch);
        actions
    }
}

impl CheckpointingStrategy for BestCheckpoint {
    fn checkpointing(&mut self, epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        self.actions(epoch)
    }
}

/// Stops training after `validation.early_stop_patience` epochs without a better score.
#[derive(Clone)]
pub struct PlateauStop {
    history: ValidationHistory,
    /// The user's request to stop, honoured once an epoch is checkpointed.
    request: Option<burn::train::Interrupter>,
}

impl PlateauStop {
    /// Judges epochs by `history`.
    pub fn new(history: ValidationHistory) -> Self {
        Self {
            history,
            request: None,
        }
    }

    /// Also stops after the epoch in which `request` is set (by the user, when the run could
    /// not stop mid-epoch: see [`crate::interrupt`]).
    pub fn or_when(self, request: burn::train::Interrupter) -> Self {
        Self {
            request: Some(request),
            ..self
        }
    }
}

impl PlateauStop {
    /// Whether to stop once `epoch` is validated.
    fn stop_after(&self, epoch: usize) -> bool {
        let patience = self.history.rule.early_stop_patience;
        if patience == 0 || !self.history.wait_for(epoch) {
            return false;
        }
        let (since, _) = self.history.plateau(epoch);
        if since >= patience {
            println!(
                "Stopping: validation {} has not improved for {since} epochs",
                self.history.rule.select_by.label()
            );
        }
        since >= patience
    }
}

impl EarlyStoppingStrategy for PlateauStop {
    fn should_stop(&mut self, epoch: usize, _: &EventStoreClient) -> bool {
        if self.request.as_ref().is_some_and(|r| r.should_stop()) {
            return true;
        }
        self.stop_after(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(epoch: usize, bleu4: f64) -> EpochScores {
        EpochScores {
            epoch,
            images: 10,
            scores: CocoScores {
                bleu: [0.5, 0.4, 0.3, bleu4],
                rouge_l: 0.4,
                cider: 1.0 - bleu4,
            },
        }
    }

    fn history(values: &[f64], patience: usize) -> ValidationHistory {
        let h = ValidationHistory::new(ValidationConfig {
            lr_decay_patience: patience,
            early_stop_patience: 5,
            ..ValidationConfig::default()
        });
        for (i, v) in values.iter().enumerate() {
            h.record(i + 1, Some(scores(i + 1, *v)));
        }
        h
    }

    fn metadata(epoch: usize, batch: usize, batches: usize) -> MetricMetadata {
        use burn::data::dataloader::Progress;
        MetricMetadata {
            progress: Progress {
                items_processed: batch,
                items_total: batches,
            },
            global_progress: Progress {
                items_processed: epoch,
                items_total: 10,
            },
            iteration: Some(batch),
            lr: None,
        }
    }

    #[test]
    fn one_scoring_per_epoch_records_every_score_and_the_other_metric_reads_it() {
        let captions = ["a red circle", "a blue square", "a green circle"];
        let vocab = Arc::new(Vocab::build(captions, 1));
        let references: Vec<Vec<String>> = captions
            .iter()
            .map(|c| vec![c.to_string(), format!("there is {c}")])
            .collect();
        let history = ValidationHistory::new(ValidationConfig::default());
        let mut scoring = CaptionScoreMetric::new(
            SelectBy::Bleu4,
            3,
            vocab.clone(),
            Arc::new(references.clone()),
            history.clone(),
        );
        let mut cider = RecordedScoreMetric::new(SelectBy::Cider, 3, history.clone());
        let found = |ids: &[usize]| -> Vec<ImageCaption> {
            ids.iter()
                .map(|&id| ImageCaption {
                    image_id: id,
                    tokens: vocab.encode(captions[(id + 1) % 3]),
                })
                .collect()
        };
        // Two batches of epoch 4: nothing is recorded before the last one.
        let first = metadata(4, 1, 2);
        scoring.update(&found(&[0, 1]), &first);
        let shown = cider.update(&found(&[0, 1]), &first);
        assert!(history.scores_of(4).is_none());
        assert_eq!(shown.formatted, "at the epoch's end");
        let last = metadata(4, 2, 2);
        scoring.update(&found(&[2]), &last);
        cider.update(&found(&[2]), &last);
        let recorded = history.scores_of(4).expect("the epoch is recorded");
        assert_eq!(recorded.images, 3);
        let candidates: Vec<String> = (0..3)
            .map(|id| scoring_text(captions[(id + 1) % 3]))
            .collect();
        let expected = coco_scores(&candidates, &references);
        assert_eq!(recorded.scores, expected);
        assert_eq!(scoring.current, expected.bleu[3]);
        assert_eq!(cider.current, Some(expected.cider));
        // Clearing at the epoch's end records nothing twice.
        scoring.clear();
        cider.clear();
        assert_eq!(history.epochs().len(), 1);
    }

    #[test]
    fn sample_is_evenly_spread_and_all_by_default() {
        assert_eq!(caption_sample(5, None).len(), 5);
        assert_eq!(caption_sample(5, Some(9)).len(), 5);
        let mut ids: Vec<usize> = caption_sample(10, Some(4)).into_iter().collect();
        ids.sort();
        assert_eq!(ids, [0, 2, 5, 7]);
    }

    #[test]
    fn best_epoch_follows_the_chosen_score() {
        let h = history(&[0.1, 0.3, 0.2, 0.3], 8);
        assert_eq!(h.best().unwrap().epoch, 2, "ties keep the earlier epoch");
        let by_cider = ValidationHistory::new(ValidationConfig {
            select_by: SelectBy::Cider,
            ..ValidationConfig::default()
        });
        for e in h.epochs() {
            by_cider.record(e.epoch, Some(e));
        }
        assert_eq!(by_cider.best().unwrap().epoch, 1);
    }

    #[test]
    fn learning_rate_decays_after_each_plateau_of_patience_epochs() {
        // Best at epoch 1, then 2 worse (decay), 2 more worse (decay), then a new best.
        let h = history(&[0.5, 0.4, 0.4, 0.3, 0.2, 0.6, 0.1], 2);
        assert!((h.lr_factor() - 0.8f64.powi(2)).abs() < 1e-12);
        assert_eq!(h.plateau(7), (1, 2));
        assert_eq!(h.plateau(3), (2, 1));
        assert_eq!(history(&[0.1, 0.2, 0.3], 2).lr_factor(), 1.0);
    }

    #[test]
    fn early_stop_after_patience_epochs_without_improvement() {
        let h = history(&[0.5, 0.1, 0.1, 0.1, 0.1], 8);
        let stop = PlateauStop::new(h.clone());
        assert!(!stop.stop_after(5), "4 epochs since the best");
        h.record(6, Some(scores(6, 0.1)));
        assert!(stop.stop_after(6));
    }

    #[test]
    fn best_checkpoint_keeps_only_the_best_epoch() {
        let h = history(&[0.2], 8);
        let mut strategy = BestCheckpoint::new(h.clone());
        assert_eq!(strategy.actions(1), [CheckpointingAction::Save]);
        h.record(2, Some(scores(2, 0.1)));
        assert!(strategy.actions(2).is_empty());
        h.record(3, Some(scores(3, 0.4)));
        assert_eq!(
            strategy.actions(3),
            [CheckpointingAction::Delete(1), CheckpointingAction::Save]
        );
    }
}

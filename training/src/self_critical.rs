//! The training side of self-critical training (see `captioner_model::self_critical`): the
//! reward, CIDEr-D against the training image's references with document frequencies from
//! the run's own training references (computed once, at the start), and the dashboard's
//! view of the samples: their mean reward, the greedy caption's reward and the samples'
//! mean length.

use std::collections::HashSet;
use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use captioner_datasets::vocab::needs_a_word_after;
use captioner_datasets::Vocab;
use captioner_model::{CaptionReward, Reward, SelfCriticalStats};

use crate::metrics::cider::CiderD;
use crate::metrics::scoring_text;

/// CIDEr-D of a caption of a training image against that image's references, as `eval`
/// scores a caption (its text through the scoring tokenizer), with the document frequencies
/// of all the training references; with [`Reward::WholeSentences`], nothing for a caption
/// that is not a whole sentence ([`Sentences`]).
pub struct CiderReward {
    vocab: Arc<Vocab>,
    cider: CiderD,
    sentences: Option<Sentences>,
}

impl CiderReward {
    /// The reward of captions (word ids of `vocab`) of training image `i` against
    /// `references[i]` (tokenised, words joined by spaces).
    pub fn new(vocab: Arc<Vocab>, references: &[Vec<String>], reward: Reward) -> Self {
        Self {
            vocab,
            cider: CiderD::new(references),
            sentences: (reward == Reward::WholeSentences).then(|| Sentences::new(references)),
        }
    }
}

impl CaptionReward for CiderReward {
    fn rewards(&self, images: &[usize], captions: &[&[u32]]) -> Vec<f64> {
        images
            .iter()
            .zip(captions)
            .map(|(&image, tokens)| {
                let text = scoring_text(&self.vocab.decode(tokens));
                match &self.sentences {
                    Some(sentences) if !sentences.is_whole(&text) => 0.0,
                    _ => self.cider.score(image, &text),
                }
            })
            .collect()
    }
}

/// What a whole sentence is, learnt from the training references: it ends on two words that
/// end one of them, and it says no two-word phrase twice unless the phrase's second word needs
/// a word after it ("in a", "of the").
pub struct Sentences {
    /// The last two words of each reference, joined by a space.
    endings: HashSet<String>,
}

impl Sentences {
    /// From the references of every training image (tokenised, words joined by spaces).
    pub fn new(references: &[Vec<String>]) -> Self {
        let endings = references
            .iter()
            .flatten()
            .filter_map(|r| {
                let words: Vec<&str> = r.split_whitespace().collect();
                (words.len() >= 2).then(|| words[words.len() - 2..].join(" "))
            })
            .collect();
        Self { endings }
    }

    /// Whether `text` (words joined by spaces) is a whole sentence.
    pub fn is_whole(&self, text: &str) -> bool {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.len() >= 2 && !self.endings.contains(&words[words.len() - 2..].join(" ")) {
            return false;
        }
        let mut phrases = HashSet::new();
        words
            .windows(2)
            .filter(|pair| !needs_a_word_after(pair[1]))
            .all(|pair| phrases.insert(pair))
    }
}

/// One of the numbers a self-critical step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleStat {
    /// The samples' mean reward.
    Reward,
    /// The greedy captions' mean reward.
    GreedyReward,
    /// The samples' mean length in words.
    Length,
}

impl SampleStat {
    fn name(self) -> &'static str {
        match self {
            SampleStat::Reward => "Sample CIDEr-D",
            SampleStat::GreedyReward => "Greedy CIDEr-D",
            SampleStat::Length => "Sample words",
        }
    }

    fn of(self, stats: &SelfCriticalStats) -> f64 {
        match self {
            SampleStat::Reward => stats.mean_reward,
            SampleStat::GreedyReward => stats.greedy_reward,
            SampleStat::Length => stats.mean_length,
        }
    }
}

/// A training metric of self-critical steps: the epoch's mean (weighted by samples) and the
/// last batch's value of one [`SampleStat`]. A teacher-forced step reports nothing to it.
#[derive(Clone)]
pub struct SelfCriticalMetric {
    stat: SampleStat,
    name: MetricName,
    state: NumericMetricState,
}

impl SelfCriticalMetric {
    /// Shows `stat`.
    pub fn new(stat: SampleStat) -> Self {
        Self {
            stat,
            name: Arc::new(stat.name().to_string()),
            state: NumericMetricState::new(),
        }
    }
}

impl Metric for SelfCriticalMetric {
    type Input = Option<SelfCriticalStats>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        Some(
            match self.stat {
                SampleStat::Reward => "Mean CIDEr-D reward of the sampled captions",
                SampleStat::GreedyReward => "Mean CIDEr-D reward of the greedy captions",
                SampleStat::Length => "Mean number of words of the sampled captions",
            }
            .into(),
        )
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: self.stat != SampleStat::Length,
        }
        .into()
    }

    fn update(&mut self, stats: &Option<SelfCriticalStats>, _: &MetricMetadata) -> SerializedEntry {
        let (value, samples) = match stats {
            Some(stats) => (self.stat.of(stats), stats.samples),
            None => (0.0, 0),
        };
        let precision = match self.stat {
            SampleStat::Length => 1,
            _ => 3,
        };
        self.state.update(
            value,
            samples,
            FormatOptions::new(self.name.clone()).precision(precision),
        )
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for SelfCriticalMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::cider::cider_d_per_image;
    use crate::metrics::scoring_texts;

    #[test]
    fn the_reward_is_the_cider_d_that_eval_gives_the_same_captions() {
        let references: Vec<Vec<String>> = [
            ["A dog runs on the grass .", "a brown dog running outside"],
            ["Two children play in the snow", "kids playing in snow ."],
            ["a man rides a bike", "A cyclist on a road ."],
        ]
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
        let captions = [
            "a dog runs on grass",
            "two kids play in the snow",
            "a man on a bike",
        ];
        let vocab = Arc::new(Vocab::build(
            references.iter().flatten().map(String::as_str),
            1,
        ));
        let references = scoring_texts(&references);
        let reward = CiderReward::new(vocab.clone(), &references, Reward::Cider);
        let tokens: Vec<Vec<u32>> = captions
            .iter()
            .map(|c| {
                let encoded = vocab.encode(c);
                encoded[1..encoded.len() - 1].to_vec()
            })
            .collect();
        let slices: Vec<&[u32]> = tokens.iter().map(Vec::as_slice).collect();
        let rewards = reward.rewards(&[0, 1, 2], &slices);
        let texts: Vec<String> = captions.iter().map(|c| scoring_text(c)).collect();
        let eval = cider_d_per_image(&texts, &references);
        assert_eq!(rewards, eval);
        assert!(rewards.iter().all(|&r| r > 0.0), "{rewards:?}");
        // A caption rewarded against another image's references.
        let swapped = reward.rewards(&[1], &slices[..1]);
        assert!(swapped[0] < rewards[0], "{swapped:?}");
    }

    #[test]
    fn whole_sentences_earn_their_cider_d_and_cut_or_repeating_ones_nothing() {
        let references: Vec<Vec<String>> = [
            ["a man rides a dirt bike", "a man riding a bike on the dirt"],
            ["a dog plays with a ball", "a brown dog with a red ball"],
        ]
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
        let vocab = Arc::new(Vocab::build(
            references.iter().flatten().map(String::as_str),
            1,
        ));
        let references = scoring_texts(&references);
        let ids = |c: &str| {
            let encoded = vocab.encode(c);
            encoded[1..encoded.len() - 1].to_vec()
        };
        let captions = [
            ids("a man rides a bike on the dirt"),
            ids("a man rides a bike on a dirt"),
            ids("a dog plays with a dog with a ball"),
            ids("a dog plays with a red ball"),
        ];
        let slices: Vec<&[u32]> = captions.iter().map(Vec::as_slice).collect();
        let images = [0, 0, 1, 1];
        let cider = CiderReward::new(vocab.clone(), &references, Reward::Cider);
        let whole = CiderReward::new(vocab.clone(), &references, Reward::WholeSentences);
        let paid = cider.rewards(&images, &slices);
        assert!(paid.iter().all(|&r| r > 0.0), "{paid:?}");
        // "a dirt" ends no reference; "a dog" comes twice; "red ball" ends one, and "with a"
        // may come twice.
        assert_eq!(
            whole.rewards(&images, &slices),
            [paid[0], 0.0, 0.0, paid[3]]
        );
    }
}

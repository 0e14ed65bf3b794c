//! Decoding captions: greedy and batched beam search at inference, and sampling from the
//! model's distribution for self-critical training.
//!
//! Both run the decoder on the device for a whole batch at a time and keep only the small
//! bookkeeping (which beams survive) on the host. A caption is at most `max_len` words long:
//! when `<end>` never comes, the best hypothesis at the cap is returned, so decoding always
//! yields a caption.

use burn::prelude::*;
use captioner_datasets::Vocab;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::decoder::{DecodeState, Decoder};
use crate::rows::{index_tensor, Shapes};
use crate::tokens::{END, PAD, START, UNK};

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchConfig {
    /// Beams kept per image; 1 is greedy decoding.
    pub beam_size: usize,
    /// Most words in a caption (`<end>` not counted).
    pub max_len: usize,
    /// Beam search's length normalisation, the exponent `alpha` of Wu et al. (2016): a
    /// caption of `n` log-probabilities (its words, and `<end>` when it has one) is ranked
    /// by its score divided by `((5 + n) / 6)^alpha`. 0 ranks by the plain sum, which
    /// favours short captions; greater values favour longer ones. Greedy decoding ignores it.
    #[serde(default)]
    pub length_penalty: f32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            beam_size: 3,
            max_len: 20,
            length_penalty: 0.0,
        }
    }
}

impl SearchConfig {
    /// `score`, the sum of `n` log-probabilities, as beam search ranks it
    /// ([`Self::length_penalty`]). With no penalty this is `score` itself.
    pub fn ranked(&self, score: f32, n: usize) -> f32 {
        score / ((5.0 + n as f32) / 6.0).powf(self.length_penalty)
    }
}

/// A decoded caption.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caption {
    /// Word ids, without `<start>` and `<end>`.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the words (and of `<end>` when it was emitted).
    pub score: f32,
    /// True when the caption ended with `<end>`, false when it was cut at the length cap.
    pub finished: bool,
    /// For each word of `tokens`, the attention weights over the grid positions that
    /// produced it.
    pub alphas: Vec<Vec<f32>>,
    /// Beam search's other captions of the image, best first (at most `beam_size - 1`;
    /// none from greedy decoding or sampling).
    pub alternatives: Vec<Alternative>,
}

/// One of beam search's other captions of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    /// Word ids, without `<start>` and `<end>`.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the words (and of `<end>` when it was emitted).
    pub score: f32,
    /// True when the caption ended with `<end>`, false when it was cut at the length cap.
    pub finished: bool,
}

/// The words a caption may not end on: after one of them the searches and sampling rule
/// `<end>` out, so that a caption goes on (or is cut at the length cap). Self-critical
/// training otherwise learns to end captions on "a" or "the": CIDEr-D's length penalty and
/// n-grams cost such an ending little, and a reader sees a broken sentence. The words are
/// the vocabulary's (`Vocab::no_end_after`); [`Endings::any`] allows every ending.
///
/// With [`Endings::blocking_repeats`] the searches (not sampling) also keep a caption from
/// saying a two-word phrase twice when its second word is not one of those words: "a dog is
/// playing with a dog", "a woman and a woman" take the next best word instead. With
/// [`Endings::blocking_cut_endings`] they rule `<end>` out after a two-word phrase that the
/// training captions hold but never end on ("on a dirt" goes on to "a dirt road").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endings {
    /// Sorted word ids.
    not_after: Vec<u32>,
    /// Whether a phrase may not come twice.
    block_repeats: bool,
    /// Sorted pairs of word ids no caption found by a search ends on.
    cut_endings: Vec<(u32, u32)>,
}

impl Endings {
    /// Every word may end a caption.
    pub fn any() -> Self {
        Self::default()
    }

    /// The vocabulary's words that no caption ends on ([`Vocab::no_end_after`]).
    pub fn of(vocab: &Vocab) -> Self {
        Self::not_after(vocab.no_end_after())
    }

    /// No caption ends right after one of the words `ids`.
    pub fn not_after(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut not_after: Vec<u32> = ids.into_iter().collect();
        not_after.sort_unstable();
        not_after.dedup();
        Self {
            not_after,
            ..Self::default()
        }
    }

    /// These endings, and (when `block`) no two-word phrase twice in a caption found by a
    /// search, unless its second word is one that may not end a caption ("in a", "of the").
    pub fn blocking_repeats(self, block: bool) -> Self {
        Self {
            block_repeats: block,
            ..self
        }
    }

    /// These endings, and no caption found by a search ending on one of the two-word phrases
    /// `phrases` (word ids; [`Vocab::cut_endings`]). No phrases: no such rule.
    pub fn blocking_cut_endings(self, phrases: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut cut_endings: Vec<(u32, u32)> = phrases.into_iter().collect();
        cut_endings.sort_unstable();
        cut_endings.dedup();
        Self {
            cut_endings,
            ..self
        }
    }

    /// The searches' own rules, on `row`, the next word's log-probabilities after `tokens`,
    /// the caption so far: `<end>` out after a cut ending ([`Self::blocking_cut_endings`]),
    /// and every word out that would repeat a phrase: each word that followed the last word
    /// before (when [`Self::blocking_repeats`]).
    fn rule_out_in_searches(&self, tokens: &[u32], row: &mut [f32]) {
        if let [.., first, second] = tokens {
            if self.cut_endings.binary_search(&(*first, *second)).is_ok() {
                row[END as usize] = f32::NEG_INFINITY;
            }
        }
        let Some(&last) = tokens.last() else {
            return;
        };
        if !self.block_repeats {
            return;
        }
        for pair in tokens.windows(2) {
            if pair[0] == last && self.not_after.binary_search(&pair[1]).is_err() {
                row[pair[1] as usize] = f32::NEG_INFINITY;
            }
        }
    }

    /// Rules `<end>` out of `row`, the next word's log-probabilities, when `previous` may not
    /// end a caption.
    fn apply(&self, previous: u32, row: &mut [f32]) {
        if self.not_after.binary_search(&previous).is_ok() {
            row[END as usize] = f32::NEG_INFINITY;
        }
    }
}

/// What the searches step: one decoder, or an ensemble of decoders ([`Mean`]).
trait Stepper<B: Backend> {
    type State;
    /// One step from the previous words `[rows]`: the next word's log-probabilities
    /// `[rows, vocab]`, the new state and the attention weights `[rows, positions]`.
    fn step(
        &self,
        state: Self::State,
        previous: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 2>, Self::State, Tensor<B, 2>);
    /// Row `i` takes the LSTM state of row `rows[i]`, a beam of the same image.
    fn reorder(state: Self::State, rows: Tensor<B, 1, Int>) -> Self::State;
    /// The rows of `state`.
    fn rows(state: &Self::State) -> usize;
    /// Where `state` is.
    fn device(state: &Self::State) -> B::Device;
}

impl<B: Backend> Stepper<B> for Decoder<B> {
    type State = DecodeState<B>;
    fn step(
        &self,
        state: DecodeState<B>,
        previous: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 2>, DecodeState<B>, Tensor<B, 2>) {
        Decoder::step(self, state, previous)
    }
    fn reorder(state: DecodeState<B>, rows: Tensor<B, 1, Int>) -> DecodeState<B> {
        state.reorder_lstm(rows)
    }
    fn rows(state: &DecodeState<B>) -> usize {
        state.features.dims()[0]
    }
    fn device(state: &DecodeState<B>) -> B::Device {
        state.features.device()
    }
}

/// Decoders that search together, each on its own grids (an ensemble, as self-critical.pytorch's
/// `AttEnsemble`): the next word's probability is the mean of theirs,
/// `log(mean_m exp(log p_m))`. The attention weights are the first decoder's.
struct Mean<'a, B: Backend>(&'a [&'a Decoder<B>]);

impl<B: Backend> Stepper<B> for Mean<'_, B> {
    type State = Vec<DecodeState<B>>;
    fn step(
        &self,
        states: Self::State,
        previous: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 2>, Self::State, Tensor<B, 2>) {
        let mut log_probs = Vec::with_capacity(self.0.len());
        let mut next = Vec::with_capacity(self.0.len());
        let mut alphas = Vec::with_capacity(self.0.len());
        for (decoder, state) in self.0.iter().zip(states) {
            let (l, s, a) = decoder.step(state, previous.clone());
            log_probs.push(l);
            next.push(s);
            alphas.push(a);
        }
        let mean = Tensor::stack::<3>(log_probs, 0)
            .exp()
            .mean_dim(0)
            .log()
            .squeeze_dim::<2>(0);
        (mean, next, alphas.swap_remove(0))
    }
    fn reorder(states: Self::State, rows: Tensor<B, 1, Int>) -> Self::State {
        states
            .into_iter()
            .map(|s| s.reorder_lstm(rows.clone()))
            .collect()
    }
    fn rows(states: &Self::State) -> usize {
        states[0].features.dims()[0]
    }
    fn device(states: &Self::State) -> B::Device {
        states[0].features.device()
    }
}

/// Captions the grids of `features` (`[n, positions, channels]`) at rows `picks`, in that
/// order: greedily at beam 1, by beam search otherwise.
///
/// Under [`Shapes::Packed`] all picks are searched together, the decoder started once per
/// image and its state copied to the beams. Under [`Shapes::Fixed`] they are searched in
/// groups of exactly [`fixed_search_images`]`(rows, beam)` images, the last group padded with
/// its first image, each group's grids copied to their beams by one `select` before the
/// decoder starts: every search then runs the same shapes, those of a teacher-forced batch of
/// `rows` captions, and meets the kernels and tuned keys that training made. The captions
/// are the same either way.
pub fn search_rows<B: Backend>(
    decoder: &Decoder<B>,
    features: Tensor<B, 3>,
    picks: &[usize],
    search: &SearchConfig,
    endings: &Endings,
    shapes: Shapes,
    rows: usize,
) -> Vec<Caption> {
    search_rows_together(
        &[decoder],
        vec![features],
        picks,
        search,
        endings,
        shapes,
        rows,
    )
}

/// [`search_rows`] with several decoders searching together, an ensemble: `features[m]` holds
/// decoder `m`'s grids of the same pictures (`[n, positions_m, channels_m]`: each decoder's
/// encoder may differ), and at every step the next word's probability is the mean of the
/// decoders' (self-critical.pytorch's `eval_ensemble`). The decoders must share one
/// vocabulary. With one decoder this is [`search_rows`].
pub fn search_rows_together<B: Backend>(
    decoders: &[&Decoder<B>],
    features: Vec<Tensor<B, 3>>,
    picks: &[usize],
    search: &SearchConfig,
    endings: &Endings,
    shapes: Shapes,
    rows: usize,
) -> Vec<Caption> {
    assert_eq!(decoders.len(), features.len(), "one grid tensor a decoder");
    assert!(!decoders.is_empty(), "at least one decoder");
    let k = search.beam_size.max(1);
    let group = match shapes {
        Shapes::Packed => picks.len().max(1),
        Shapes::Fixed => fixed_search_images(rows, k),
    };
    let mut captions = Vec::with_capacity(picks.len());
    for chunk in picks.chunks(group) {
        let images: Vec<usize> = match shapes {
            Shapes::Packed => chunk.to_vec(),
            Shapes::Fixed => (0..group)
                .map(|i| chunk.get(i).copied().unwrap_or(chunk[0]))
                .collect(),
        };
        let mut states: Vec<DecodeState<B>> = decoders
            .iter()
            .zip(&features)
            .map(|(decoder, features)| start_beams(decoder, features.clone(), &images, k, shapes))
            .collect();
        let mut found = match decoders {
            [decoder] => search_from(*decoder, states.remove(0), images.len(), search, endings),
            _ => search_from(&Mean(decoders), states, images.len(), search, endings),
        };
        found.truncate(chunk.len());
        captions.extend(found);
    }
    captions
}

/// Greedy decoding at beam 1, beam search otherwise, from `state`, `n` images' beams.
fn search_from<B: Backend, S: Stepper<B>>(
    stepper: &S,
    state: S::State,
    n: usize,
    search: &SearchConfig,
    endings: &Endings,
) -> Vec<Caption> {
    match search.beam_size.max(1) {
        1 => greedy_from(stepper, state, search.max_len, endings),
        _ => beam_search_from(stepper, state, n, search, endings),
    }
}

/// How many images [`Shapes::Fixed`] searches at once: as many as have their beams fit in
/// `rows` decoder rows, and at least one.
pub fn fixed_search_images(rows: usize, beam_size: usize) -> usize {
    (rows / beam_size.max(1)).max(1)
}

fn host_rows<B: Backend>(tensor: Tensor<B, 2>) -> (Vec<f32>, usize) {
    let width = tensor.dims()[1];
    let values = tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor data");
    (values, width)
}

/// Rules out of `row`, the next word's log-probabilities after the word `previous`, the words
/// that are never a caption's: `<pad>`, `<start>` and, unless `allow_unk`, `<unk>`; and
/// `<end>` after a word of `endings`. A caption with "<unk>" in it is of no use to a reader, so the
/// searches take the best real word instead (coco-caption codebases call this suppressing
/// UNK): on Flickr8k dev, 11% of the beam-3 captions of a Show-Attend-Tell run held an
/// `<unk>` before. Sampling allows it: a sampled `<unk>` earns no reward, which teaches the
/// model to avoid it.
fn rule_out(row: &mut [f32], previous: u32, allow_unk: bool, endings: &Endings) {
    endings.apply(previous, row);
    row[PAD as usize] = f32::NEG_INFINITY;
    row[START as usize] = f32::NEG_INFINITY;
    if !allow_unk {
        if let Some(unk) = row.get_mut(UNK as usize) {
            *unk = f32::NEG_INFINITY;
        }
    }
}

/// Host copy of the next-word log-probabilities (`[rows, vocab]`), with [`rule_out`] applied
/// to each row (its last word in `previous`).
fn next_word_log_probs<B: Backend>(
    log_probs: Tensor<B, 2>,
    previous: &[u32],
    endings: &Endings,
) -> (Vec<f32>, usize) {
    let (mut values, vocab) = host_rows(log_probs);
    for (row, &previous) in values.chunks_mut(vocab).zip(previous) {
        rule_out(row, previous, false, endings);
    }
    (values, vocab)
}

fn token_tensor<B: Backend>(tokens: &[u32], device: &B::Device) -> Tensor<B, 1, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, [tokens.len()]), device)
}

/// Greedy decoding: the most likely word at every step (the lowest id on a tie).
pub fn greedy<B: Backend>(
    decoder: &Decoder<B>,
    features: Tensor<B, 3>,
    max_len: usize,
    endings: &Endings,
) -> Vec<Caption> {
    greedy_from(decoder, decoder.start(features), max_len, endings)
}

/// [`greedy`] from the decoder's start, one row per image.
fn greedy_from<B: Backend, S: Stepper<B>>(
    stepper: &S,
    state: S::State,
    max_len: usize,
    endings: &Endings,
) -> Vec<Caption> {
    let argmax =
        |row: &mut [f32]| (0..row.len()).fold(0, |b, v| if row[v] > row[b] { v } else { b });
    decode_rows(stepper, state, max_len, Words::Best, endings, argmax)
}

/// Which words [`decode_rows`] offers its `pick`, and whether it keeps attention maps.
#[derive(Clone, Copy, PartialEq)]
enum Words {
    /// Real words only (`<unk>` ruled out); each word's attention map is kept.
    Best,
    /// Any word but `<pad>` and `<start>`; no attention maps.
    Drawn,
}

/// One caption per row of `state`: at every step `pick` chooses the next word from the row's
/// log-probabilities (`[vocab]`, the words never a caption's at minus infinity, and `<end>`
/// after a word of `endings`), until `<end>` or `max_len` words. A caption's `score` is the
/// sum of its words' log-probabilities.
fn decode_rows<B: Backend, S: Stepper<B>>(
    stepper: &S,
    mut state: S::State,
    max_len: usize,
    words: Words,
    endings: &Endings,
    mut pick: impl FnMut(&mut [f32]) -> usize,
) -> Vec<Caption> {
    let device = S::device(&state);
    let n = S::rows(&state);
    let mut captions = vec![Caption::default(); n];
    let mut previous = vec![START; n];
    for _ in 0..max_len {
        let (log_probs, next, alpha) = stepper.step(state, token_tensor(&previous, &device));
        state = next;
        let (mut log_probs, vocab) = host_rows(log_probs);
        let alpha = (words == Words::Best).then(|| host_rows(alpha));
        for (i, caption) in captions.iter_mut().enumerate() {
            if caption.finished {
                continue;
            }
            let row = &mut log_probs[i * vocab..(i + 1) * vocab];
            rule_out(row, previous[i], words == Words::Drawn, endings);
            if words == Words::Best {
                endings.rule_out_in_searches(&caption.tokens, row);
            }
            let word = pick(row);
            caption.score += row[word];
            if word as u32 == END {
                caption.finished = true;
            } else {
                caption.tokens.push(word as u32);
                if let Some((alpha, positions)) = &alpha {
                    caption
                        .alphas
                        .push(alpha[i * positions..(i + 1) * positions].to_vec());
                }
            }
            previous[i] = word as u32;
        }
        if captions.iter().all(|c| c.finished) {
            break;
        }
    }
    captions
}

/// `samples` captions of each grid of `features` (`[n, positions, channels]`) at rows
/// `picks`, drawn from the model's distribution (`picks.len() * samples` captions, the samples
/// of each image together), each word drawn from the softmax of the step's scores (`<pad>`
/// and `<start>` excluded, `<end>` too after a word of `endings`; `<unk>` may be drawn, and
/// earns nothing), until `<end>` or `max_len` words. The draws are a function of `seed`: the
/// same seed, model and grids give the same captions. A caption's `score` is the sum of its
/// words' log-probabilities (those of the distribution before `<end>` was ruled out).
#[allow(clippy::too_many_arguments)]
pub fn sample_rows<B: Backend>(
    decoder: &Decoder<B>,
    features: Tensor<B, 3>,
    picks: &[usize],
    samples: usize,
    max_len: usize,
    endings: &Endings,
    seed: u64,
    shapes: Shapes,
) -> Vec<Caption> {
    let state = start_beams(decoder, features, picks, samples.max(1), shapes);
    let mut rng = SmallRng::seed_from_u64(seed);
    decode_rows(decoder, state, max_len, Words::Drawn, endings, |row| {
        draw(row, &mut rng)
    })
}

/// Draws an index of `log_probs` with probability `exp(log_probs[v])` (renormalised over the
/// finite entries).
fn draw(log_probs: &[f32], rng: &mut SmallRng) -> usize {
    let top = log_probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = log_probs.iter().map(|&l| f64::from(l - top).exp()).sum();
    let mut target = rng.random::<f64>() * total;
    for (v, &l) in log_probs.iter().enumerate() {
        target -= f64::from(l - top).exp();
        if target < 0.0 {
            return v;
        }
    }
    // Rounding left a sliver: the last word that could be drawn.
    log_probs
        .iter()
        .rposition(|l| l.is_finite())
        .expect("some word can be drawn")
}

#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    alphas: Vec<Vec<f32>>,
    score: f32,
}

impl Hypothesis {
    /// How beam search ranks this hypothesis: its score normalised for its length (its words,
    /// and `<end>` when `finished`).
    fn ranked(&self, search: &SearchConfig, finished: bool) -> f32 {
        search.ranked(self.score, self.tokens.len() + usize::from(finished))
    }

    fn into_caption(self, finished: bool, alternatives: Vec<Alternative>) -> Caption {
        Caption {
            tokens: self.tokens,
            score: self.score,
            finished,
            alphas: self.alphas,
            alternatives,
        }
    }
}

/// The beams of one image.
struct ImageBeams {
    alive: Vec<Hypothesis>,
    finished: Vec<Hypothesis>,
    done: bool,
}

impl ImageBeams {
    /// The best finished caption's rank ([`Hypothesis::ranked`]).
    fn best_finished(&self, search: &SearchConfig) -> f32 {
        self.finished
            .iter()
            .map(|h| h.ranked(search, true))
            .fold(f32::NEG_INFINITY, f32::max)
    }
}

/// Beam search over a batch: `beam_size` hypotheses per image, ranked by the sum of their
/// words' log-probabilities; the finished captions are ranked by that sum normalised for
/// their length ([`SearchConfig::length_penalty`]). An image is done once its best finished
/// caption ranks at least as well as its best unfinished one could when finished (scores only
/// fall as captions grow, and no caption is longer than `max_len` words and `<end>`). With a
/// beam of 1 this is exactly [`greedy`].
pub fn beam_search<B: Backend>(
    decoder: &Decoder<B>,
    features: Tensor<B, 3>,
    search: &SearchConfig,
    endings: &Endings,
) -> Vec<Caption> {
    let all: Vec<usize> = (0..features.dims()[0]).collect();
    let state = start_beams(
        decoder,
        features,
        &all,
        search.beam_size.max(1),
        Shapes::Packed,
    );
    beam_search_from(decoder, state, all.len(), search, endings)
}

/// The decoder's start on the grids of `features` at rows `picks`, each taken `k` times in a
/// row (its beams together): `picks.len() * k` rows. [`Shapes::Packed`] starts once per
/// image and copies the state to the beams (the least work); [`Shapes::Fixed`] copies the
/// grids to the beams first, so that the start runs at the beam row count too.
fn start_beams<B: Backend>(
    decoder: &Decoder<B>,
    features: Tensor<B, 3>,
    picks: &[usize],
    k: usize,
    shapes: Shapes,
) -> DecodeState<B> {
    let device = features.device();
    let beams_of = |rows: &mut dyn Iterator<Item = usize>| -> Vec<usize> {
        rows.flat_map(|row| std::iter::repeat_n(row, k)).collect()
    };
    match shapes {
        Shapes::Packed => {
            let state = decoder.start(features.select(0, index_tensor(picks, &device)));
            if k == 1 {
                return state;
            }
            let beams = beams_of(&mut (0..picks.len()));
            state.select(index_tensor(&beams, &device))
        }
        Shapes::Fixed => {
            let beams = beams_of(&mut picks.iter().copied());
            decoder.start(features.select(0, index_tensor(&beams, &device)))
        }
    }
}

/// The `keep` best words of `row` (log-probabilities), best first, the lower word first on
/// a tie: one pass that keeps the best so far in order, for the few a beam step keeps of a
/// vocabulary of thousands.
fn best_words(row: &[f32], keep: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(keep + 1);
    for (word, score) in row.iter().enumerate() {
        // A word ranks below a word before it unless its score is greater.
        let below = |&b: &usize| row[b].total_cmp(score).is_ge();
        if best.len() == keep && best.last().is_none_or(below) {
            continue;
        }
        best.insert(best.partition_point(below), word);
        best.truncate(keep);
    }
    best
}

/// [`beam_search`] from the decoder's start on `n` images already expanded to their beams
/// (`state` has `n * beam_size` rows, the beams of each image together).
fn beam_search_from<B: Backend, S: Stepper<B>>(
    stepper: &S,
    mut state: S::State,
    n: usize,
    search: &SearchConfig,
    endings: &Endings,
) -> Vec<Caption> {
    let device = S::device(&state);
    let k = search.beam_size.max(1);
    let mut beams: Vec<ImageBeams> = (0..n)
        .map(|_| ImageBeams {
            alive: vec![Hypothesis {
                tokens: Vec::new(),
                alphas: Vec::new(),
                score: 0.0,
            }],
            finished: Vec::new(),
            done: false,
        })
        .collect();
    let mut previous = vec![START; n * k];

    for _ in 0..search.max_len {
        let (log_probs, next, alpha) = stepper.step(state, token_tensor(&previous, &device));
        let (mut log_probs, vocab) = next_word_log_probs(log_probs, &previous, endings);
        let (alpha, positions) = host_rows(alpha);
        let mut rows = Vec::with_capacity(n * k);
        for (image, beams) in beams.iter_mut().enumerate() {
            if beams.done {
                rows.extend(std::iter::repeat_n(image * k, k));
                continue;
            }
            // The best 2k continuations of each beam are enough to find the best k alive.
            let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
            for (j, hyp) in beams.alive.iter().enumerate() {
                let row = &mut log_probs[(image * k + j) * vocab..(image * k + j + 1) * vocab];
                endings.rule_out_in_searches(&hyp.tokens, row);
                let row = &*row;
                let best = best_words(row, 2 * k);
                candidates.extend(best.iter().map(|&v| (hyp.score + row[v], j, v)));
            }
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut alive = Vec::with_capacity(k);
            for (score, j, v) in candidates {
                if alive.len() == k {
                    break;
                }
                let parent = &beams.alive[j];
                if v as u32 == END {
                    beams.finished.push(Hypothesis {
                        score,
                        ..parent.clone()
                    });
                    continue;
                }
                let row = image * k + j;
                let mut hyp = Hypothesis {
                    score,
                    ..parent.clone()
                };
                hyp.tokens.push(v as u32);
                hyp.alphas
                    .push(alpha[row * positions..(row + 1) * positions].to_vec());
                alive.push((hyp, row));
            }
            // The most an alive hypothesis can rank: its score (which only falls) over the
            // greatest normaliser, that of the longest caption.
            let best_alive = alive
                .first()
                .map(|a| search.ranked(a.0.score, search.max_len + 1))
                .unwrap_or(f32::NEG_INFINITY);
            beams.done = alive.is_empty() || beams.best_finished(search) >= best_alive;
            for j in 0..k {
                let (row, token) = alive
                    .get(j)
                    .map(|(h, row)| (*row, *h.tokens.last().expect("alive beams have a word")))
                    .unwrap_or((image * k, END));
                rows.push(row);
                previous[image * k + j] = token;
            }
            beams.alive = alive.into_iter().map(|(h, _)| h).collect();
        }
        if beams.iter().all(|b| b.done) {
            break;
        }
        // Every row in `rows` is a beam of the same image as the row it fills.
        state = S::reorder(next, index_tensor(&rows, &device));
    }

    beams
        .into_iter()
        .map(|beams| {
            let finished = beams.finished.into_iter().map(|h| (h, true));
            let cut = if beams.done { Vec::new() } else { beams.alive };
            // Best first; on a tie the one found first (finished before cut).
            let mut ranked: Vec<(Hypothesis, bool)> = finished
                .chain(cut.into_iter().map(|h| (h, false)))
                .collect();
            ranked.sort_by(|a, b| {
                let rank = |(h, finished): &(Hypothesis, bool)| h.ranked(search, *finished);
                rank(b).total_cmp(&rank(a))
            });
            let mut ranked = ranked.into_iter();
            let Some((best, finished)) = ranked.next() else {
                return Caption::default();
            };
            let alternatives = ranked
                .take(k - 1)
                .map(|(h, finished)| Alternative {
                    tokens: h.tokens,
                    score: h.score,
                    finished,
                })
                .collect();
            best.into_caption(finished, alternatives)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    use crate::decoder::DecoderConfig;
    use crate::test_random::{redrawn, unit};

    const VOCAB: u32 = 12;

    /// Captions of six random grids by a random decoder that likes `<end>`: greedy, beam 4
    /// and 8 samples each.
    fn captions(endings: &Endings) -> [Vec<Caption>; 3] {
        let decoder = random_decoder(11, 8).favouring(END, 2.0);
        let grids = grids(12, [6, 4, 8]);
        let beam = SearchConfig {
            beam_size: 4,
            max_len: 8,
            length_penalty: 0.0,
        };
        [
            greedy(&decoder, grids.clone(), 8, endings),
            beam_search(&decoder, grids.clone(), &beam, endings),
            sample_rows(
                &decoder,
                grids,
                &[0, 1, 2, 3, 4, 5],
                8,
                8,
                endings,
                5,
                Shapes::Packed,
            ),
        ]
    }

    fn ends_on_a_word(c: &Caption) -> bool {
        c.finished && !c.tokens.is_empty()
    }

    fn ends_on_an_odd_word(c: &Caption) -> bool {
        ends_on_a_word(c) && c.tokens.last().unwrap() % 2 == 1
    }

    #[test]
    fn no_search_ends_a_caption_on_a_word_it_may_not_end_on() {
        // Free to end on any word (not on `<start>`: the empty caption is likely), the three
        // end captions on words, and the 48 samples on odd ones too.
        let free = captions(&Endings::not_after([START]));
        for found in &free {
            assert!(found.iter().any(ends_on_a_word), "{found:?}");
        }
        assert!(free[2].iter().any(ends_on_an_odd_word), "{:?}", free[2]);
        // Odd words may not end a caption: each row's own last word is checked, so the
        // captions still end, on even words only.
        let odd = Endings::not_after([START].into_iter().chain((UNK..VOCAB).step_by(2)));
        let found = captions(&odd);
        for found in &found {
            assert!(!found.iter().any(ends_on_an_odd_word), "{found:?}");
        }
        for (search, found) in ["beam", "samples"].iter().zip(&found[1..]) {
            assert!(found.iter().any(ends_on_a_word), "{search}: {found:?}");
        }
        // No word may, nor `<start>` (an empty caption): every caption runs to the cap.
        let none = Endings::not_after(START..VOCAB);
        for found in captions(&none) {
            assert!(found.iter().all(|c| !ends_on_a_word(c)));
            assert!(found.iter().all(|c| c.tokens.len() == 8), "{found:?}");
        }
    }

    /// A random decoder over `feature_dim`-wide grids, drawn from `seed`.
    fn random_decoder(seed: u64, feature_dim: usize) -> Decoder<NdArray> {
        let decoder = DecoderConfig::new(VOCAB as usize, feature_dim)
            .with_embed_dim(8)
            .with_attention_dim(8)
            .with_hidden_dim(16)
            .with_dropout(0.0)
            .init::<NdArray>(&Default::default());
        redrawn(decoder, seed)
    }

    fn grids(seed: u64, shape: [usize; 3]) -> Tensor<NdArray, 3> {
        unit(shape, seed, &Default::default())
    }

    fn words(captions: &[Caption]) -> Vec<Vec<u32>> {
        captions.iter().map(|c| c.tokens.clone()).collect()
    }

    #[test]
    fn a_decoder_searching_together_with_itself_captions_as_it_does_alone() {
        let decoder = random_decoder(3, 8);
        let features = grids(4, [5, 4, 8]);
        let picks = [0, 1, 2, 3, 4];
        for beam_size in [1, 3] {
            let search = SearchConfig {
                beam_size,
                max_len: 8,
                length_penalty: 0.0,
            };
            let alone = search_rows(
                &decoder,
                features.clone(),
                &picks,
                &search,
                &Endings::any(),
                Shapes::Packed,
                0,
            );
            let together = search_rows_together(
                &[&decoder, &decoder],
                vec![features.clone(), features.clone()],
                &picks,
                &search,
                &Endings::any(),
                Shapes::Packed,
                0,
            );
            assert_eq!(words(&alone), words(&together), "beam {beam_size}");
            for (a, t) in alone.iter().zip(&together) {
                assert!((a.score - t.score).abs() < 1e-4, "{a:?} {t:?}");
                assert_eq!(a.alphas, t.alphas);
            }
        }
    }

    #[test]
    fn decoders_searching_together_take_the_word_of_their_mean_probability() {
        // Two decoders over grids of different shapes (two encoders), greedy, one word.
        let (first, second) = (random_decoder(5, 8), random_decoder(6, 6));
        let (grids_a, grids_b) = (grids(7, [4, 9, 8]), grids(8, [4, 4, 6]));
        let search = SearchConfig {
            beam_size: 1,
            max_len: 1,
            length_penalty: 0.0,
        };
        let together = search_rows_together(
            &[&first, &second],
            vec![grids_a.clone(), grids_b.clone()],
            &[0, 1, 2, 3],
            &search,
            &Endings::any(),
            Shapes::Packed,
            0,
        );
        let device = Default::default();
        let starts = token_tensor::<NdArray>(&[START; 4], &device);
        let probs = |decoder: &Decoder<NdArray>, grids: Tensor<NdArray, 3>| {
            let (log_probs, _, _) = decoder.step(decoder.start(grids), starts.clone());
            host_rows(log_probs.exp()).0
        };
        let (p, q) = (probs(&first, grids_a), probs(&second, grids_b));
        let vocab = VOCAB as usize;
        let mut differs = false;
        for (image, caption) in together.iter().enumerate() {
            let mean: Vec<f32> = (0..vocab)
                .map(|v| (p[image * vocab + v] + q[image * vocab + v]) / 2.0)
                .collect();
            let best = (UNK as usize + 1..vocab)
                .chain([END as usize])
                .max_by(|&a, &b| mean[a].total_cmp(&mean[b]))
                .unwrap();
            let alone = (UNK as usize + 1..vocab)
                .chain([END as usize])
                .max_by(|&a, &b| p[image * vocab + a].total_cmp(&p[image * vocab + b]))
                .unwrap();
            differs |= best != alone;
            let (word, score) = (
                caption.tokens.first().copied().unwrap_or(END),
                caption.score,
            );
            assert_eq!(word as usize, best, "image {image}");
            assert!(
                (score - mean[best].ln()).abs() < 1e-5,
                "{score} {}",
                mean[best].ln()
            );
        }
        assert!(
            differs,
            "the second decoder changed no word: pick other seeds"
        );
    }

    /// Whether `tokens` holds a two-word phrase twice whose second word is not in `free`.
    fn repeats(tokens: &[u32], free: &[u32]) -> bool {
        let mut seen = std::collections::HashSet::new();
        tokens
            .windows(2)
            .filter(|pair| !free.contains(&pair[1]))
            .any(|pair| !seen.insert(pair))
    }

    /// The greedy captions of `features` and those of a 3-beam search, up to 8 words each.
    fn greedy_and_beam(
        decoder: &Decoder<NdArray>,
        features: &Tensor<NdArray, 3>,
        endings: &Endings,
    ) -> Vec<Caption> {
        let beam = SearchConfig {
            beam_size: 3,
            max_len: 8,
            length_penalty: 0.0,
        };
        let mut found = greedy(decoder, features.clone(), 8, endings);
        found.extend(beam_search(decoder, features.clone(), &beam, endings));
        found
    }

    #[test]
    fn searches_blocking_repeats_never_say_a_phrase_twice() {
        // A decoder that seldom ends, so that its 8-word captions over 8 words repeat; words 4
        // and 5 play "a" and "in": phrases ending on them may repeat.
        let decoder = random_decoder(1, 8).favouring(END, -4.0);
        let features = grids(2, [6, 4, 8]);
        let free = [START, 4, 5];
        let search = |endings: &Endings| greedy_and_beam(&decoder, &features, endings);
        let allowed = Endings::not_after(free);
        let before = search(&allowed);
        assert!(
            before.iter().any(|c| repeats(&c.tokens, &free)),
            "no search repeated a phrase to begin with: {before:?}"
        );
        let after = search(&allowed.clone().blocking_repeats(true));
        for c in &after {
            assert!(!repeats(&c.tokens, &free), "{c:?}");
        }
        // Sampling draws from the model's distribution whatever the rule.
        let sample = |endings: &Endings| {
            sample_rows(
                &decoder,
                features.clone(),
                &[0, 1, 2],
                4,
                8,
                endings,
                3,
                Shapes::Packed,
            )
        };
        assert_eq!(
            words(&sample(&allowed)),
            words(&sample(&allowed.clone().blocking_repeats(true)))
        );
    }

    #[test]
    fn searches_blocking_cut_endings_end_no_caption_on_those_phrases() {
        // A decoder that ends as soon as it may.
        let decoder = random_decoder(3, 8).favouring(END, 0.15);
        let features = grids(4, [8, 4, 8]);
        let search = |endings: &Endings| greedy_and_beam(&decoder, &features, endings);
        let ending = |c: &Caption| match c.tokens.as_slice() {
            [.., a, b] if c.finished => Some((*a, *b)),
            _ => None,
        };
        // Odd words may not end a caption, so that some captions run past their first word.
        let allowed = Endings::not_after([START].into_iter().chain((UNK..VOCAB).step_by(2)));
        let before = search(&allowed);
        let cut: Vec<(u32, u32)> = before.iter().filter_map(ending).collect();
        assert!(!cut.is_empty(), "no caption ends on two words: {before:?}");
        let after = search(&allowed.clone().blocking_cut_endings(cut.clone()));
        for c in &after {
            assert!(ending(c).is_none_or(|e| !cut.contains(&e)), "{c:?}");
        }
        assert!(after.iter().any(|c| c.finished), "{after:?}");
        // Sampling draws from the model's distribution whatever the rule.
        let sample = |endings: &Endings| {
            sample_rows(
                &decoder,
                features.clone(),
                &[0, 1],
                4,
                8,
                endings,
                3,
                Shapes::Packed,
            )
        };
        assert_eq!(
            words(&sample(&allowed)),
            words(&sample(&allowed.clone().blocking_cut_endings(cut)))
        );
    }

    #[test]
    fn best_words_are_those_of_a_full_sort_with_ties_to_the_lower_word() {
        let row = [
            0.5f32,
            -1.0,
            2.0,
            0.5,
            f32::NEG_INFINITY,
            2.0,
            -3.0,
            0.5,
            1.0,
        ];
        let mut sorted: Vec<usize> = (0..row.len()).collect();
        sorted.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for keep in 0..=row.len() + 1 {
            let want = &sorted[..keep.min(row.len())];
            assert_eq!(best_words(&row, keep), want, "keep {keep}");
        }
    }

    #[test]
    fn a_length_penalty_lengthens_captions_and_ranks_them_by_their_normalised_score() {
        // A decoder that ends early: the plain sum keeps its captions short.
        let decoder = random_decoder(11, 8).favouring(END, 1.0);
        let features = grids(12, [8, 4, 8]);
        let config = |length_penalty| SearchConfig {
            beam_size: 3,
            max_len: 8,
            length_penalty,
        };
        let search = |alpha| {
            beam_search(
                &decoder,
                features.clone(),
                &config(alpha),
                &Endings::not_after([START]),
            )
        };
        let words = |found: &[Caption]| found.iter().map(|c| c.tokens.len()).sum::<usize>();
        let (plain, long) = (search(0.0), search(4.0));
        assert!(words(&long) > words(&plain), "{plain:?}\n{long:?}");
        let rank = |tokens: &[u32], score: f32, finished: bool| {
            config(4.0).ranked(score, tokens.len() + usize::from(finished))
        };
        for c in &long {
            let best = rank(&c.tokens, c.score, c.finished);
            for a in &c.alternatives {
                assert!(best >= rank(&a.tokens, a.score, a.finished), "{c:?}");
            }
        }
    }
}

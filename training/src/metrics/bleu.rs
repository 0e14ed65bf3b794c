//! Corpus BLEU-1..4 exactly as the coco-caption toolkit computes it (`BleuScorer` with the
//! "closest" reference length): n-gram counts clipped by the most any one reference holds,
//! summed over the corpus, with its `tiny`/`small` smoothing constants and brevity penalty.

use std::collections::HashMap;

const TINY: f64 = 1e-15;
const SMALL: f64 = 1e-9;

fn ngram_counts(words: &[&str], max_n: usize) -> HashMap<Vec<String>, usize> {
    let mut counts = HashMap::new();
    for n in 1..=max_n {
        for gram in words.windows(n) {
            *counts
                .entry(gram.iter().map(|w| w.to_string()).collect())
                .or_default() += 1;
        }
    }
    counts
}

/// Corpus BLEU-1..4 of `candidates[i]` against `references[i]` (already tokenised captions,
/// words separated by spaces). Returns `[bleu1, bleu2, bleu3, bleu4]` as fractions.
pub fn corpus_bleu(candidates: &[String], references: &[Vec<String>]) -> [f64; 4] {
    assert_eq!(
        candidates.len(),
        references.len(),
        "one set of references per candidate"
    );
    let (mut test_len, mut ref_len) = (0usize, 0usize);
    let mut guess = [0usize; 4];
    let mut correct = [0usize; 4];
    for (candidate, refs) in candidates.iter().zip(references) {
        let mut max_counts: HashMap<Vec<String>, usize> = HashMap::new();
        let mut lengths = Vec::with_capacity(refs.len());
        for reference in refs {
            let words: Vec<&str> = reference.split_whitespace().collect();
            lengths.push(words.len());
            for (gram, count) in ngram_counts(&words, 4) {
                let best = max_counts.entry(gram).or_default();
                *best = (*best).max(count);
            }
        }
        let words: Vec<&str> = candidate.split_whitespace().collect();
        let len = words.len();
        test_len += len;
        ref_len += lengths
            .iter()
            .map(|&l| (l.abs_diff(len), l))
            .min()
            .map(|(_, l)| l)
            .unwrap_or(0);
        for (k, g) in guess.iter_mut().enumerate() {
            *g += len.saturating_sub(k);
        }
        for (gram, count) in ngram_counts(&words, 4) {
            correct[gram.len() - 1] += count.min(max_counts.get(&gram).copied().unwrap_or(0));
        }
    }
    let mut scores = [0.0; 4];
    let mut product = 1.0;
    for k in 0..4 {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        scores[k] = product.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (test_len as f64 + TINY) / (ref_len as f64 + SMALL);
    if ratio < 1.0 {
        for s in &mut scores {
            *s *= (1.0 - 1.0 / ratio).exp();
        }
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn identical_caption_scores_one() {
        let b = corpus_bleu(
            &[s("a red circle left of a blue square")],
            &[vec![s("a red circle left of a blue square")]],
        );
        for v in b {
            assert!((v - 1.0).abs() < 1e-9, "{b:?}");
        }
    }

    #[test]
    fn matches_hand_computed_value_with_clipping_and_brevity() {
        // candidate "the the cat" (3 words) against "the cat sat" and "a cat":
        // 1-grams: the x2 (max in any ref 1) + cat x1 -> 2 correct of 3
        // 2-grams: "the the" 0, "the cat" 1 -> 1 of 2; 3-grams: 0 of 1; 4-grams: 0 of 0
        // The closest reference length is 3, yet as in coco-caption the ratio
        // (3 + tiny) / (3 + small) is a hair below 1, so a (tiny) brevity penalty applies.
        let b = corpus_bleu(&[s("the the cat")], &[vec![s("the cat sat"), s("a cat")]]);
        let ratio: f64 = (3.0 + TINY) / (3.0 + SMALL);
        let penalty = (1.0 - 1.0 / ratio).exp();
        assert!(penalty < 1.0);
        let p1: f64 = (2.0 + TINY) / (3.0 + SMALL);
        let p2: f64 = p1 * (1.0 + TINY) / (2.0 + SMALL);
        assert!((b[0] - p1 * penalty).abs() < 1e-15, "{b:?}");
        assert!((b[1] - p2.sqrt() * penalty).abs() < 1e-15, "{b:?}");
        assert!(b[3] < 1e-3);
        // A short candidate gets the brevity penalty exp(1 - r/c).
        let short = corpus_bleu(&[s("a cat")], &[vec![s("a cat sat down")]]);
        let expected = (1.0f64 - 4.0 / 2.0).exp();
        assert!((short[0] - expected).abs() < 1e-9, "{short:?}");
    }
}

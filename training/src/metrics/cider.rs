//! CIDEr-D as coco-caption computes it (`pycocoevalcap/cider/cider_scorer.py`, reported there
//! as `CIDEr`), quirks included:
//! - captions are split on white space; n-grams of 1 to 4 words;
//! - the document frequency of an n-gram is the number of images whose references hold it,
//!   over the references of all the images scored, and `ref_len` is `ln(number of images)`: an
//!   n-gram weighs `tf * (ref_len - ln(max(1, df)))`;
//! - per n, the similarity of candidate and reference is the clipped dot product
//!   `sum min(w_cand, w_ref) * w_ref` over the candidate's n-grams, divided by both norms
//!   (when neither is zero), times the length penalty `exp(-delta^2 / (2 sigma^2))` with
//!   sigma 6, where the lengths compared are the numbers of *bigrams* (coco's `length` counts
//!   only those);
//! - an image scores the mean over n of these, averaged over its references, times 10; the
//!   corpus score is the mean over images.

use std::collections::{BTreeMap, HashMap};

const N: usize = 4;
const SIGMA: f64 = 6.0;

/// n-gram counts, indexed by `n - 1`; an n-gram is its words joined by single spaces.
/// Ordered maps: the sums over n-grams then add in the same order in every process, so a
/// score is the same to the last bit from run to run (a self-critical run's rewards too).
type Counts = [BTreeMap<String, usize>; N];

fn precook(caption: &str) -> Counts {
    let words: Vec<&str> = caption.split_whitespace().collect();
    let mut counts: Counts = Default::default();
    for (k, map) in counts.iter_mut().enumerate() {
        for gram in words.windows(k + 1) {
            *map.entry(gram.join(" ")).or_default() += 1;
        }
    }
    counts
}

/// tf-idf weights per n, their norms, and the number of bigrams.
struct Vector {
    weights: [BTreeMap<String, f64>; N],
    norms: [f64; N],
    length: usize,
}

fn counts_to_vector(counts: &Counts, doc_freq: &HashMap<String, f64>, ref_len: f64) -> Vector {
    let mut weights: [BTreeMap<String, f64>; N] = Default::default();
    let mut norms = [0.0; N];
    let mut length = 0;
    for (n, grams) in counts.iter().enumerate() {
        for (gram, &tf) in grams {
            let df = doc_freq.get(gram).copied().unwrap_or(0.0).max(1.0).ln();
            let w = tf as f64 * (ref_len - df);
            norms[n] += w * w;
            weights[n].insert(gram.clone(), w);
            if n == 1 {
                length += tf;
            }
        }
    }
    Vector {
        weights,
        norms: norms.map(f64::sqrt),
        length,
    }
}

fn similarity(hyp: &Vector, reference: &Vector) -> [f64; N] {
    let delta = hyp.length as f64 - reference.length as f64;
    let penalty = (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
    let mut val = [0.0; N];
    for (n, v) in val.iter_mut().enumerate() {
        for (gram, &w) in &hyp.weights[n] {
            let r = reference.weights[n].get(gram).copied().unwrap_or(0.0);
            *v += w.min(r) * r;
        }
        if hyp.norms[n] != 0.0 && reference.norms[n] != 0.0 {
            *v /= hyp.norms[n] * reference.norms[n];
        }
        *v *= penalty;
    }
    val
}

/// CIDEr-D against a fixed set of images' references: their document frequencies and
/// reference vectors computed once. `eval` and validation make one for the images they
/// score; self-critical training makes one for the training images, once, and rewards every
/// sample with it.
pub struct CiderD {
    doc_freq: HashMap<String, f64>,
    ref_len: f64,
    references: Vec<Vec<Vector>>,
}

impl CiderD {
    /// The scorer of captions of image `i` against `references[i]` (tokenised, words joined
    /// by spaces), document frequencies over all of these images' references.
    pub fn new(references: &[Vec<String>]) -> Self {
        let refs: Vec<Vec<Counts>> = references
            .iter()
            .map(|r| r.iter().map(|c| precook(c)).collect())
            .collect();
        let mut doc_freq: HashMap<String, f64> = HashMap::new();
        for image in &refs {
            let mut seen: Vec<&String> = image.iter().flatten().flat_map(|m| m.keys()).collect();
            seen.sort_unstable();
            seen.dedup();
            for gram in seen {
                *doc_freq.entry(gram.clone()).or_default() += 1.0;
            }
        }
        let ref_len = (references.len() as f64).ln();
        let references = refs
            .iter()
            .map(|image| {
                image
                    .iter()
                    .map(|r| counts_to_vector(r, &doc_freq, ref_len))
                    .collect()
            })
            .collect();
        Self {
            doc_freq,
            ref_len,
            references,
        }
    }

    /// Images whose references this scores against.
    pub fn images(&self) -> usize {
        self.references.len()
    }

    /// CIDEr-D of `candidate` (tokenised, words joined by spaces) as a caption of image
    /// `image`.
    ///
    /// # Panics
    /// If `image` has no references.
    pub fn score(&self, image: usize, candidate: &str) -> f64 {
        let image_refs = &self.references[image];
        assert!(!image_refs.is_empty(), "CIDEr-D needs a reference");
        let hyp = counts_to_vector(&precook(candidate), &self.doc_freq, self.ref_len);
        let mut score = [0.0; N];
        for reference in image_refs {
            for (s, v) in score.iter_mut().zip(similarity(&hyp, reference)) {
                *s += v;
            }
        }
        let mean = score.iter().sum::<f64>() / N as f64;
        mean / image_refs.len() as f64 * 10.0
    }
}

/// CIDEr-D of each `candidates[i]` against `references[i]` (tokenised, words joined by
/// spaces), document frequencies from the references of all the images given.
pub fn cider_d_per_image(candidates: &[String], references: &[Vec<String>]) -> Vec<f64> {
    assert_eq!(
        candidates.len(),
        references.len(),
        "one set of references per candidate"
    );
    let scorer = CiderD::new(references);
    candidates
        .iter()
        .enumerate()
        .map(|(image, candidate)| scorer.score(image, candidate))
        .collect()
}

/// Corpus CIDEr-D of `candidates` against `references`, IDF from `references` (0 for no
/// candidates).
pub fn cider_d(candidates: &[String], references: &[Vec<String>]) -> f64 {
    let scores = cider_d_per_image(candidates, references);
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &[&str]) -> Vec<String> {
        x.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn exact_matches_of_two_word_captions() {
        // Every n-gram is in one image of two: weight ln 2 each. Unigram and bigram
        // similarities are 1, there are no 3- and 4-grams: (1 + 1 + 0 + 0) / 4 * 10 = 5.
        let c = cider_d(&s(&["a b", "c d"]), &[s(&["a b"]), s(&["c d"])]);
        assert!((c - 5.0).abs() < 1e-12, "{c}");
    }

    #[test]
    fn matches_hand_computed_value_with_clipping_and_length_penalty() {
        // Image 1: "a a b" against "a b c". With L = ln 2 for every n-gram (df 1 or 0):
        // unigrams: cand a:2L b:L (norm sqrt5 L), ref a,b,c: L (norm sqrt3 L); clipped dot
        // min(2L,L)L + L*L = 2L^2 -> 2/sqrt15. Bigrams: cand "a a","a b", ref "a b","b c" ->
        // L^2 / (sqrt2 L sqrt2 L) = 1/2. Trigrams: no overlap -> 0. Both have 2 bigrams.
        let s1 = (2.0 / 15f64.sqrt() + 0.5) / 4.0 * 10.0;
        // Image 2: "d" against "d e": unigram 1/sqrt2; bigram lengths 0 and 1 -> penalty
        // exp(-1/72).
        let s2 = (1.0 / 2f64.sqrt() * (-1.0f64 / 72.0).exp()) / 4.0 * 10.0;
        let per = cider_d_per_image(&s(&["a a b", "d"]), &[s(&["a b c"]), s(&["d e"])]);
        assert!((per[0] - s1).abs() < 1e-12, "{per:?}");
        assert!((per[1] - s2).abs() < 1e-12, "{per:?}");
        // pycocoevalcap 1.2 gives 2.1421893992479735 for this corpus.
        let c = cider_d(&s(&["a a b", "d"]), &[s(&["a b c"]), s(&["d e"])]);
        assert!((c - 2.142_189_399_247_973_5).abs() < 1e-12, "{c}");
    }

    #[test]
    fn averages_over_references_and_idf_spans_images() {
        // "a" is in the references of both images: idf 0, it counts for nothing.
        let refs = [s(&["a b", "a c"]), s(&["a d"])];
        let per = cider_d_per_image(&s(&["a b", "a d"]), &refs);
        // Image 1: against "a b" unigrams b only (a weighs 0): 1; bigram "a b": 1 -> 5;
        // against "a c": nothing in common -> 0; mean over 2 references: 2.5.
        assert!((per[0] - 2.5).abs() < 1e-12, "{per:?}");
        assert!((per[1] - 5.0).abs() < 1e-12, "{per:?}");
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(cider_d(&[], &[]), 0.0);
        // One image: ref_len = ln 1 = 0, every weight 0.
        assert_eq!(cider_d(&s(&["a b"]), &[s(&["a b"])]), 0.0);
        let per = cider_d_per_image(&s(&["", "c d"]), &[s(&["a b"]), s(&["c d"])]);
        assert_eq!(per[0], 0.0);
    }
}

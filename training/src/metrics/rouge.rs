//! ROUGE-L as coco-caption computes it (`pycocoevalcap/rouge/rouge.py`): per image, the longest
//! common subsequence of the candidate with each reference gives a precision and a recall; the
//! best precision and the best recall (possibly from different references) make an F-measure
//! with beta 1.2; the corpus score is the mean over images.
//!
//! As there, captions are split on single spaces (`split(" ")`), so an empty candidate is one
//! empty word: it matches nothing, except an empty reference.

/// coco-caption's beta (recall weighted 1.2 times precision).
const BETA: f64 = 1.2;

/// Length of the longest common subsequence of `a` and `b`.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Sentence ROUGE-L (beta 1.2) of `candidate` against `references` (tokenised, words joined by
/// single spaces), as coco-caption's `Rouge.calc_score`.
pub fn rouge_l(candidate: &str, references: &[String]) -> f64 {
    assert!(!references.is_empty(), "ROUGE-L needs a reference");
    let cand: Vec<&str> = candidate.split(' ').collect();
    let (mut prec_max, mut rec_max) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for reference in references {
        let refw: Vec<&str> = reference.split(' ').collect();
        let common = lcs(&refw, &cand) as f64;
        prec_max = prec_max.max(common / cand.len() as f64);
        rec_max = rec_max.max(common / refw.len() as f64);
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        let b2 = BETA * BETA;
        ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max)
    } else {
        0.0
    }
}

/// Sentence ROUGE-L of each `candidates[i]` against `references[i]`.
pub fn rouge_l_per_image(candidates: &[String], references: &[Vec<String>]) -> Vec<f64> {
    assert_eq!(
        candidates.len(),
        references.len(),
        "one set of references per candidate"
    );
    candidates
        .iter()
        .zip(references)
        .map(|(c, r)| rouge_l(c, r))
        .collect()
}

/// Mean over candidates of sentence ROUGE-L (beta 1.2) against their references (0 for no
/// candidates).
pub fn mean_rouge_l(candidates: &[String], references: &[Vec<String>]) -> f64 {
    let scores = rouge_l_per_image(candidates, references);
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lcs_lengths() {
        assert_eq!(lcs(&["a", "c", "e"], &["a", "b", "c", "d"]), 2);
        assert_eq!(lcs(&["a", "b"], &["b", "a"]), 1);
        assert_eq!(lcs(&[], &["a"]), 0);
        assert_eq!(lcs(&["x", "a", "y", "b"], &["a", "b", "x", "y"]), 2);
    }

    #[test]
    fn matches_hand_computed_values() {
        // LCS("a c e", "a b c d") = 2: precision 2/4, recall 2/3.
        let (p, r) = (0.5, 2.0 / 3.0);
        let expected = 2.44 * p * r / (r + 1.44 * p);
        let got = rouge_l("a b c d", &refs(&["a c e"]));
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        assert!((got - 0.586_538_461_538_461_5).abs() < 1e-12);
        // The best precision and the best recall may come from different references.
        assert_eq!(rouge_l("a b c", &refs(&["a b", "a b c d e f"])), 1.0);
        assert_eq!(rouge_l("a b", &refs(&["a b"])), 1.0);
        assert_eq!(rouge_l("x y", &refs(&["a b"])), 0.0);
    }

    #[test]
    fn empty_candidate_is_one_empty_word() {
        assert_eq!(rouge_l("", &refs(&["a b"])), 0.0);
        assert_eq!(rouge_l("", &refs(&[""])), 1.0);
        assert_eq!(rouge_l("a", &refs(&["a", ""])), 1.0);
    }

    #[test]
    fn mean_over_images() {
        let c = refs(&["a b", "x y"]);
        let r = vec![refs(&["a b"]), refs(&["a b"])];
        assert_eq!(mean_rouge_l(&c, &r), 0.5);
        assert_eq!(mean_rouge_l(&[], &[]), 0.0);
    }
}

//! The coco-caption metrics (pycocoevalcap): corpus BLEU-1..4, ROUGE-L and CIDEr-D, computed
//! as the reference implementation computes them, on captions already tokenised by
//! [`captioner_datasets::tokenize`] (coco-caption's PTB tokenisation) and joined by spaces.

pub mod bleu;
pub mod cider;
pub mod rouge;

use serde::{Deserialize, Serialize};

/// The scores pycocoevalcap prints, as fractions (BLEU, ROUGE-L) and CIDEr-D on its scale
/// (about 0..10, usually below 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CocoScores {
    /// Corpus BLEU-1..4 (`Bleu_1`..`Bleu_4`).
    pub bleu: [f64; 4],
    /// Mean sentence ROUGE-L, beta 1.2 (`ROUGE_L`).
    pub rouge_l: f64,
    /// CIDEr-D with IDF from the references being scored (`CIDEr`).
    pub cider: f64,
}

impl CocoScores {
    /// The scores under coco-caption's names: `Bleu_1`..`Bleu_4`, `ROUGE_L`, `CIDEr`.
    pub fn to_coco_json(&self) -> serde_json::Value {
        serde_json::json!({
            "Bleu_1": self.bleu[0],
            "Bleu_2": self.bleu[1],
            "Bleu_3": self.bleu[2],
            "Bleu_4": self.bleu[3],
            "ROUGE_L": self.rouge_l,
            "CIDEr": self.cider,
        })
    }
}

/// A caption as the scores read it: coco-caption's tokenisation, words joined by one space.
pub fn scoring_text(caption: &str) -> String {
    captioner_datasets::tokenize(caption).join(" ")
}

/// Each caption of each image through [`scoring_text`].
pub fn scoring_texts(captions: &[Vec<String>]) -> Vec<Vec<String>> {
    captions
        .iter()
        .map(|c| c.iter().map(|c| scoring_text(c)).collect())
        .collect()
}

/// [`coco_scores`] of raw captions (as written, before tokenisation): what pycocoevalcap's
/// `COCOEvalCap` computes from a results file and its annotations.
pub fn coco_scores_of_raw(candidates: &[String], references: &[Vec<String>]) -> CocoScores {
    let candidates: Vec<String> = candidates.iter().map(|c| scoring_text(c)).collect();
    coco_scores(&candidates, &scoring_texts(references))
}

/// Scores `candidates[i]` against `references[i]` (tokenised, words joined by one space).
pub fn coco_scores(candidates: &[String], references: &[Vec<String>]) -> CocoScores {
    CocoScores {
        bleu: bleu::corpus_bleu(candidates, references),
        rouge_l: rouge::mean_rouge_l(candidates, references),
        cider: cider::cider_d(candidates, references),
    }
}

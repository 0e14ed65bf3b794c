//! Caption text: tokenisation and the word vocabulary shared by training and inference.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ptb_tokenizer::ptb_tokenize;

/// Padding token id: fills captions up to the batch's longest one and never counts in the loss.
pub const PAD: u32 = 0;
/// Start-of-caption token id: the decoder's first input.
pub const START: u32 = 1;
/// End-of-caption token id: the decoder emits it to stop.
pub const END: u32 = 2;
/// Unknown-word token id: replaces words too rare to be in the vocabulary.
pub const UNK: u32 = 3;

const SPECIALS: [&str; 4] = ["<pad>", "<start>", "<end>", "<unk>"];

/// Words after which a caption is not finished (one cut at the length cap may still end on
/// them): articles, possessives, conjunctions and prepositions that
/// need a word after them (self-critical.pytorch's `bad_endings`, and more). Each ends fewer
/// than 0.3% of its uses in the Flickr8k training captions; "on", "by" and "her", which end
/// 2-13% of theirs ("with a hat on"), are not here.
const NO_END_AFTER: [&str; 21] = [
    "a", "an", "the", "this", "that", "his", "its", "their", "some", "and", "at", "for", "from",
    "in", "into", "of", "to", "with", "while", "is", "are",
];

/// Whether `word` needs a word after it, so that no caption ends on it (see [`NO_END_AFTER`]).
pub fn needs_a_word_after(word: &str) -> bool {
    NO_END_AFTER.contains(&word)
}

/// Splits a caption into lowercase words as coco-caption's PTB tokenizer does (clitics such as
/// `'s` and `n't` split off, punctuation dropped), so that the vocabulary and the scores share
/// one tokenisation. See [`crate::ptb_tokenizer`].
pub fn tokenize(caption: &str) -> Vec<String> {
    ptb_tokenize(caption)
}

/// Word <-> id mapping, built from the training captions only and saved as `vocab.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocab {
    words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary from captions: words seen at least `min_freq` times, most frequent
    /// first (ties alphabetical, so that the result is deterministic), after the four specials.
    pub fn build<'a>(captions: impl IntoIterator<Item = &'a str>, min_freq: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for caption in captions {
            for word in tokenize(caption) {
                *counts.entry(word).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, n)| *n >= min_freq.max(1))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let words = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(kept.into_iter().map(|(w, _)| w))
            .collect();
        Self::from_words(words)
    }

    /// The ids of this vocabulary's words that no caption should end on (see
    /// [`NO_END_AFTER`]), for the searches to rule `<end>` out after them.
    pub fn no_end_after(&self) -> Vec<u32> {
        NO_END_AFTER
            .iter()
            .filter_map(|w| self.index.get(*w).copied())
            .collect()
    }

    fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Self { words, index }
    }

    /// Every word, by id (the four specials first).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Number of entries, special tokens included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when the vocabulary holds only the special tokens.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= SPECIALS.len()
    }

    /// The id of `word`, or [`UNK`].
    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(UNK)
    }

    /// The word for `id` (`<unk>` for an id out of range).
    pub fn word(&self, id: u32) -> &str {
        self.words
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or(SPECIALS[UNK as usize])
    }

    /// `<start> w1 .. wn <end>` as ids.
    pub fn encode(&self, caption: &str) -> Vec<u32> {
        std::iter::once(START)
            .chain(tokenize(caption).iter().map(|w| self.id(w)))
            .chain(std::iter::once(END))
            .collect()
    }

    /// The words of `ids` joined by spaces, stopping at `<end>` and leaving out the specials
    /// other than `<unk>`.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .take_while(|&&id| id != END)
            .filter(|&&id| id != PAD && id != START)
            .map(|&id| self.word(id))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Writes the vocabulary as JSON (`{"words": [...]}`, the id is the position).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::files::write_file(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// Reads a vocabulary written by [`Vocab::save`].
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read vocabulary {}: {e}", path.display()))?;
        let raw: Vocab = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a vocabulary file: {e}", path.display()))?;
        if raw.words.len() < SPECIALS.len() || raw.words[..SPECIALS.len()] != SPECIALS {
            return Err(format!(
                "{}: a vocabulary must start with {SPECIALS:?}",
                path.display()
            ));
        }
        Ok(Self::from_words(raw.words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_lowercases_and_strips_punctuation() {
        assert_eq!(
            tokenize("A dog, running!  Fast."),
            ["a", "dog", "running", "fast"]
        );
        assert_eq!(
            tokenize("The dog's ball isn't red-and-white (3.5 cm)?!"),
            [
                "the",
                "dog",
                "'s",
                "ball",
                "is",
                "n't",
                "red-and-white",
                "-lrb-",
                "3.5",
                "cm",
                "-rrb-",
                "?!"
            ]
        );
        assert!(tokenize(" ,.; ").is_empty());
    }

    #[test]
    fn build_encode_decode_roundtrip() {
        let caps = ["a red circle", "a blue circle", "a red square", "zebra"];
        let vocab = Vocab::build(caps, 2);
        assert_eq!(vocab.word(4), "a");
        assert_eq!(vocab.id("zebra"), UNK);
        let ids = vocab.encode("A red circle!");
        assert_eq!(ids[0], START);
        assert_eq!(*ids.last().unwrap(), END);
        assert_eq!(vocab.decode(&ids), "a red circle");
        assert_eq!(vocab.decode(&vocab.encode("a zebra")), "a <unk>");
    }

    #[test]
    fn articles_and_prepositions_in_the_vocabulary_are_words_no_caption_ends_on() {
        let vocab = Vocab::build(["a dog runs in the park with a ball on it"], 1);
        let words: Vec<&str> = vocab
            .no_end_after()
            .iter()
            .map(|&id| vocab.word(id))
            .collect();
        assert_eq!(words, ["a", "the", "in", "with"]);
        // Words the vocabulary lacks are not turned into <unk>.
        assert!(!vocab.no_end_after().contains(&UNK));
    }

    #[test]
    fn save_load_roundtrip_and_bad_file() {
        let dir = std::env::temp_dir().join(format!("vocab-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vocab = Vocab::build(["a red circle"], 1);
        let path = dir.join("vocab.json");
        vocab.save(&path).unwrap();
        let loaded = Vocab::load(&path).unwrap();
        assert_eq!(loaded, vocab);
        assert_eq!(loaded.id("red"), vocab.id("red"));
        std::fs::write(&path, "{\"words\": [\"x\"]}").unwrap();
        assert!(Vocab::load(&path).unwrap_err().contains("vocab.json"));
    }
}

//! Caption text: tokenisation and the word vocabulary shared by training and inference.

use std::collections::{HashMap, HashSet};
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

/// How many training captions must hold a two-word phrase that ends none of them for the
/// phrase to be a cut ending ([`Vocab::cut_endings`]): rarer phrases say too little.
const CUT_ENDING_MIN_CAPTIONS: usize = 5;

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
    /// Two-word phrases ("a dirt", "in a red") that no training caption ends on though at
    /// least [`CUT_ENDING_MIN_CAPTIONS`] of them hold the phrase, words joined by a space,
    /// sorted; those whose second word needs a word after it anyway are left out. Empty in a
    /// vocabulary written before the list was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cut_endings: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary from captions: words seen at least `min_freq` times, most frequent
    /// first (ties alphabetical, so that the result is deterministic), after the four specials.
    /// The captions' cut endings are kept too ([`Self::cut_endings`]).
    pub fn build<'a>(captions: impl IntoIterator<Item = &'a str>, min_freq: usize) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        // Per two-word phrase: how many captions hold it, and whether one ends on it.
        let mut phrases: HashMap<(String, String), (usize, bool)> = HashMap::new();
        for caption in captions {
            let words = tokenize(caption);
            let held: HashSet<&[String]> = words.windows(2).collect();
            for pair in held {
                let entry = phrases
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_default();
                entry.0 += 1;
            }
            if let [.., first, second] = words.as_slice() {
                phrases
                    .entry((first.clone(), second.clone()))
                    .or_default()
                    .1 = true;
            }
            for word in words {
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
        let mut vocab = Self::from_words(words);
        let mut cut: Vec<String> = phrases
            .into_iter()
            .filter(|((first, second), (held, ended))| {
                !ended
                    && *held >= CUT_ENDING_MIN_CAPTIONS
                    && !needs_a_word_after(second)
                    && vocab.index.contains_key(first)
                    && vocab.index.contains_key(second)
            })
            .map(|((first, second), _)| format!("{first} {second}"))
            .collect();
        cut.sort_unstable();
        vocab.cut_endings = cut;
        vocab
    }

    /// The two-word phrases no caption should end on, as pairs of word ids: phrases that the
    /// training captions hold but never end on ("on a dirt" goes on: "a dirt bike", "a dirt
    /// road"), for the searches to rule `<end>` out after them when asked. Empty for a
    /// vocabulary written before the list was kept.
    pub fn cut_endings(&self) -> Vec<(u32, u32)> {
        self.cut_endings
            .iter()
            .filter_map(|phrase| {
                let (first, second) = phrase.split_once(' ')?;
                Some((*self.index.get(first)?, *self.index.get(second)?))
            })
            .collect()
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
        Self {
            words,
            cut_endings: Vec::new(),
            index,
        }
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
        Ok(Self {
            cut_endings: raw.cut_endings,
            ..Self::from_words(raw.words)
        })
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
    fn phrases_held_by_five_captions_and_ending_none_are_cut_endings() {
        let mut captions = vec!["a man rides a dirt bike"; 5];
        captions.extend(["a dog runs in the dirt", "a boy on a red bike"]);
        captions.extend(["a red ball"; 4]);
        let vocab = Vocab::build(captions.iter().copied(), 1);
        let phrases: Vec<String> = vocab
            .cut_endings()
            .iter()
            .map(|&(a, b)| format!("{} {}", vocab.word(a), vocab.word(b)))
            .collect();
        // Held by five captions each, ending none. Not: "dirt bike" and "red ball" (they end
        // captions), "a dog" (one caption), "rides a" ("a" needs a word after it anyway).
        assert_eq!(phrases, ["a dirt", "a man", "a red", "man rides"]);
        let dir = std::env::temp_dir().join(format!("vocab-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vocab.json");
        vocab.save(&path).unwrap();
        assert_eq!(
            Vocab::load(&path).unwrap().cut_endings(),
            vocab.cut_endings()
        );
        // A vocabulary written before the list was kept reads as one without cut endings.
        std::fs::write(
            &path,
            r#"{"words": ["<pad>", "<start>", "<end>", "<unk>", "a"]}"#,
        )
        .unwrap();
        assert!(Vocab::load(&path).unwrap().cut_endings().is_empty());
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

//! Caption text: coco-caption's PTB tokenisation, detokenisation, building a vocabulary from
//! captions, encoding and decoding with it, and reading a `vocab.json`.
//!
//! The input is text: its lines are the captions; the first byte sets the vocabulary's
//! minimum count. The same bytes are also read as a `vocab.json`.

#![no_main]

use captioner_datasets::ptb_tokenizer::{detokenize, ptb_tokenize};
use captioner_datasets::vocab::{END, START, UNK};
use captioner_datasets::{tokenize, Vocab};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&min_freq, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let captions: Vec<&str> = text.lines().collect();
    let vocab = Vocab::build(captions.iter().copied(), min_freq as usize % 4);
    for caption in &captions {
        let words = ptb_tokenize(caption);
        for word in &words {
            assert!(!word.is_empty(), "an empty token from {caption:?}");
            // CoreNLP joins a number and a fraction with a no-break space (`1 1/2`).
            assert!(
                !word.chars().any(|c| c.is_whitespace() && c != '\u{a0}'),
                "token {word:?} of {caption:?} holds a space"
            );
        }
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        // Shown to people and scored again, a caption keeps its words, short of the two
        // exceptions `detokenize` documents: tokens that depend on capitals (CoreNLP keeps
        // `AT&T` whole, splits `at&t`), and a number and a fraction that were not apart
        // (`3'1/2` is shown `3 1/2`, one token for CoreNLP).
        let shown = detokenize(&refs);
        let fused = words
            .windows(2)
            .any(|pair| is_number_then_fraction(&pair[0], &pair[1]));
        if ptb_tokenize(&caption.to_lowercase()) == words && !fused {
            assert_eq!(
                ptb_tokenize(&shown),
                words,
                "{caption:?} shown as {shown:?}"
            );
        }
        // Every word of a caption is in the vocabulary it was built from (min count 1).
        let ids = vocab.encode(caption);
        assert_eq!(ids.first(), Some(&START));
        assert_eq!(ids.last(), Some(&END));
        assert_eq!(ids.len(), words.len() + 2);
        if min_freq % 4 <= 1 {
            assert!(
                !ids.contains(&UNK),
                "{caption:?}: a word missing from the vocabulary"
            );
            assert_eq!(vocab.decode(&ids), words.join(" "));
        }
        assert_eq!(tokenize(caption), words);
    }

    // The same bytes as a vocabulary file.
    let path =
        std::env::temp_dir().join(format!("captioner-fuzz-vocab-{}.json", std::process::id()));
    std::fs::write(&path, rest).unwrap();
    if let Ok(loaded) = Vocab::load(&path) {
        let ids: Vec<u32> = (0..loaded.len() as u32 + 2).collect();
        let _ = loaded.decode(&ids);
        let _ = loaded.no_end_after();
        for caption in &captions {
            let _ = loaded.encode(caption);
        }
    }
});

/// `1` then `1/2`, which CoreNLP makes one token when a space is between them.
fn is_number_then_fraction(first: &str, second: &str) -> bool {
    let small = |t: &str| (1..=4).contains(&t.len()) && t.chars().all(|c| c.is_ascii_digit());
    small(first)
        && second
            .split_once('/')
            .is_some_and(|(a, b)| small(a) && small(b))
}

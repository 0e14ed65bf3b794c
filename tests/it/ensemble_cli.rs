//! Models captioning together (`--model` given more than once), the search's rules against
//! repeated phrases (`--block-repeats`) and cut endings (`--block-cut-endings`) and its length
//! normalisation (`--length-penalty`), through `infer` and `eval model`.

use captioner_datasets::vocab::needs_a_word_after;

use crate::common::{flickr8k_fixture, temp_dir, text, untrained_run};
use crate::shipped_cli::{f32_captions, run, shipped};

/// Whether `caption` says a two-word phrase twice whose second word is not one that needs a
/// word after it ("a", "in", "is": those phrases may repeat).
fn repeats_a_phrase(caption: &str) -> bool {
    let words: Vec<&str> = caption.split_whitespace().collect();
    let mut seen = std::collections::HashSet::new();
    words
        .windows(2)
        .filter(|pair| !needs_a_word_after(pair[1]))
        .any(|pair| !seen.insert(pair.to_vec()))
}

#[test]
fn a_model_given_twice_captions_and_scores_as_the_model_alone() {
    let model = shipped();
    let model = model.to_str().unwrap();
    let out = run(
        "infer",
        &["--model", model, "--model", model, "tests/fixtures/photos"],
        None,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout), f32_captions());
    assert!(stderr.contains("beam 3, 2 models)"), "{stderr}");

    let dir = temp_dir("ensemble-eval");
    let data = dir.join("flickr8k");
    flickr8k_fixture(&data);
    let eval = |models: &[&str]| {
        let mut args = vec!["model", "--split", "dev", "--json", "--data-dir"];
        args.push(data.to_str().unwrap());
        for m in models {
            args.extend(["--model", m]);
        }
        let out = run("eval", &args, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let scores: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        assert!(scores["CIDEr"].is_number(), "{scores}");
        (scores, text(&out.stderr))
    };
    let (alone, _) = eval(&[model]);
    let (together, said) = eval(&[model, model]);
    assert_eq!(together, alone);
    assert!(said.contains("with 2 models together"), "{said}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn models_with_different_vocabularies_are_refused_with_both_folders_named() {
    let dir = temp_dir("ensemble-vocab");
    let other = untrained_run(&dir);
    let (model, other) = (shipped(), other.root().to_path_buf());
    let out = run(
        "infer",
        &[
            "--model",
            model.to_str().unwrap(),
            "--model",
            other.to_str().unwrap(),
            "tests/fixtures/photos/cat.jpg",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!(
            "{} and {} cannot caption together: their vocabularies differ",
            model.display(),
            other.display()
        )),
        "{said}"
    );
    assert!(text(&out.stdout).is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn blocking_repeats_keeps_captions_from_saying_a_phrase_twice() {
    // Long captions repeat: ranked for length this strongly, the shipped model's do.
    let captions = |block: bool| {
        let mut args = vec!["--length-penalty", "10", "tests/fixtures/photos"];
        if block {
            args.insert(0, "--block-repeats");
        }
        let out = run("infer", &args, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let before = captions(false);
    assert!(
        before
            .lines()
            .any(|l| repeats_a_phrase(l.split_once('\t').unwrap().1)),
        "{before}"
    );
    let after = captions(true);
    assert_eq!(after.lines().count(), 4);
    for line in after.lines() {
        let (_, caption) = line.split_once('\t').unwrap();
        assert!(!repeats_a_phrase(caption), "{line}");
        assert!(caption.split_whitespace().count() >= 4, "{line}");
    }
    // The captions that did not repeat a phrase are unchanged.
    for (was, is) in before.lines().zip(after.lines()) {
        if !repeats_a_phrase(was.split_once('\t').unwrap().1) {
            assert_eq!(was, is);
        }
    }
}

/// The two-word phrases the vocabulary of `model` says no caption should end on.
fn cut_endings(model: &std::path::Path) -> Vec<String> {
    let vocab = std::fs::read_to_string(model.join("vocab.json")).unwrap();
    let vocab: serde_json::Value = serde_json::from_str(&vocab).unwrap();
    serde_json::from_value(vocab["cut_endings"].clone()).unwrap()
}

/// The last two words of `caption`.
fn ending(caption: &str) -> String {
    let words: Vec<&str> = caption.split_whitespace().collect();
    words[words.len().saturating_sub(2)..].join(" ")
}

#[test]
fn blocking_cut_endings_ends_no_caption_on_a_listed_phrase_and_needs_the_list_in_vocab_json() {
    // train keeps the phrases its captions hold but never end on.
    assert!(cut_endings(&shipped()).contains(&"a dirt".to_string()));

    // A copy of the shipped model whose list is the endings of its own captions of the test
    // photos: with the rule, every one of them ends otherwise.
    let before = f32_captions();
    let endings: Vec<String> = before
        .lines()
        .map(|l| ending(l.split_once('\t').unwrap().1))
        .collect();
    let dir = temp_dir("cut-endings");
    for file in ["model.safetensors", "config.json", "vocab.json"] {
        std::fs::copy(shipped().join(file), dir.join(file)).unwrap();
    }
    let write_list = |list: Option<&[String]>| {
        let vocab = std::fs::read_to_string(shipped().join("vocab.json")).unwrap();
        let mut vocab: serde_json::Value = serde_json::from_str(&vocab).unwrap();
        let object = vocab.as_object_mut().unwrap();
        match list {
            Some(list) => object.insert("cut_endings".into(), serde_json::json!(list)),
            None => object.remove("cut_endings"),
        };
        std::fs::write(dir.join("vocab.json"), vocab.to_string()).unwrap();
    };
    write_list(Some(&endings));
    let photos = ["--block-cut-endings", "tests/fixtures/photos"];
    let out = run("infer", &photos, Some(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = text(&out.stdout);
    assert_eq!(after.lines().count(), 4);
    for line in after.lines() {
        let (_, caption) = line.split_once('\t').unwrap();
        assert!(
            !endings.contains(&ending(caption)),
            "{line} (before: {before})"
        );
    }
    // Without the rule the list changes nothing.
    let out = run("infer", &photos[1..], Some(&dir));
    assert_eq!(text(&out.stdout), before);

    // A model whose vocab.json was written before the list was kept is refused, with why.
    write_list(None);
    let out = run("infer", &photos, Some(&dir));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("vocab.json lists no cut endings"), "{said}");
    assert!(text(&out.stdout).is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_length_penalty_lengthens_beam_search_captions_and_none_changes_nothing() {
    let captions = |alpha: &str| {
        let out = run(
            "infer",
            &["--length-penalty", alpha, "tests/fixtures/photos"],
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(captions("0"), f32_captions());
    let words = |lines: &str| -> Vec<usize> {
        lines
            .lines()
            .map(|l| l.split_once('\t').unwrap().1.split_whitespace().count())
            .collect()
    };
    let (plain, long) = (words(&f32_captions()), words(&captions("3")));
    assert!(
        plain.iter().zip(&long).all(|(p, l)| l >= p),
        "{plain:?} {long:?}"
    );
    assert!(long.iter().sum::<usize>() > plain.iter().sum::<usize>());
    let out = run(
        "infer",
        &["--length-penalty", "11", "tests/fixtures/photos"],
        None,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("'11' is not a number from 0 to 10"),
        "{stderr}"
    );
}

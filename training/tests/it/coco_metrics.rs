//! Agreement with coco-caption (pycocoevalcap 1.2) on the synthetic fixture written by
//! `tests/fixtures/coco_metrics/make_fixture.py`: the tokenisation of every caption, and
//! BLEU-1..4, ROUGE-L and CIDEr-D over the whole set.

use std::collections::BTreeMap;
use std::path::PathBuf;

use captioner_datasets::ptb_tokenizer::ptb_tokenize;
use captioner_datasets::tokenize;
use captioner_training::metrics::coco_scores;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/coco_metrics")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn tokenisation_matches_coco_ptb_tokenizer() {
    let expected = fixture("expected.json");
    let tokenized = expected["tokenized"].as_object().expect("a tokenized map");
    assert!(tokenized.len() > 500, "{} captions", tokenized.len());
    let mut differences = Vec::new();
    for (raw, coco) in tokenized {
        let coco = coco.as_str().expect("a string");
        let ours = ptb_tokenize(raw).join(" ");
        if ours != coco {
            differences.push(format!("{raw:?}\n   coco: {coco:?}\n   ours: {ours:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} captions tokenised differently:\n{}",
        differences.len(),
        tokenized.len(),
        differences.join("\n")
    );
}

#[test]
fn scores_match_pycocoevalcap() {
    let references = fixture("references.json");
    let results = fixture("results.json");
    let expected = fixture("expected.json");

    let mut refs_by_image: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for image in references["images"].as_array().unwrap() {
        refs_by_image.insert(image["id"].as_i64().unwrap(), Vec::new());
    }
    for ann in references["annotations"].as_array().unwrap() {
        let caption = ann["caption"].as_str().unwrap();
        refs_by_image
            .get_mut(&ann["image_id"].as_i64().unwrap())
            .expect("an annotation of a listed image")
            .push(tokenize(caption).join(" "));
    }
    let mut candidate_by_image: BTreeMap<i64, String> = BTreeMap::new();
    for result in results.as_array().unwrap() {
        let caption = result["caption"].as_str().unwrap();
        let previous = candidate_by_image.insert(
            result["image_id"].as_i64().unwrap(),
            tokenize(caption).join(" "),
        );
        assert!(previous.is_none(), "one result per image");
    }
    assert_eq!(
        candidate_by_image.keys().collect::<Vec<_>>(),
        refs_by_image.keys().collect::<Vec<_>>(),
        "results and references cover the same images"
    );
    let (candidates, refs): (Vec<String>, Vec<Vec<String>>) = refs_by_image
        .into_iter()
        .map(|(id, r)| (candidate_by_image.remove(&id).unwrap(), r))
        .unzip();

    let ours = coco_scores(&candidates, &refs).to_coco_json();
    let coco = &expected["scores"];
    let mut report = String::new();
    let mut ok = true;
    for (name, tolerance) in [
        ("Bleu_1", 1e-6),
        ("Bleu_2", 1e-6),
        ("Bleu_3", 1e-6),
        ("Bleu_4", 1e-6),
        ("ROUGE_L", 1e-6),
        ("CIDEr", 1e-4),
    ] {
        let (a, b) = (ours[name].as_f64().unwrap(), coco[name].as_f64().unwrap());
        let diff = (a - b).abs();
        ok &= diff <= tolerance;
        report.push_str(&format!(
            "{name}: ours {a:.12} coco {b:.12} |diff| {diff:.3e} (tolerance {tolerance:e})\n"
        ));
    }
    println!("{report}");
    assert!(ok, "scores disagree with pycocoevalcap:\n{report}");
}

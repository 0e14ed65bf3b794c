//! `eval` as a user runs it: a trained run captions a whole split and is scored, its results
//! and references files are re-scored by `eval score` to the same numbers, and broken or
//! mismatched files are refused with the file and the images named.

use std::path::Path;

use serde_json::Value;

use crate::common::{exec, flickr8k_fixture, quick_flickr8k_flags, temp_dir, text};

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const METRICS: [&str; 6] = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"];

/// `eval score` of two files.
fn score(results: &Path, references: &Path) -> std::process::Output {
    let (results, references) = (results.to_str().unwrap(), references.to_str().unwrap());
    exec(
        "eval",
        &["score", "--results", results, "--references", references],
    )
}

fn run_ok(bin: &str, args: &[&str]) -> (String, String) {
    let out = exec(bin, args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{bin} {args:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn a_shapes_run_is_scored_and_its_files_score_the_same_again() {
    let dir = temp_dir("eval-shapes");
    let run = dir.join("run");
    let run = run.to_str().unwrap();
    run_ok(
        "train",
        &[
            "--epochs",
            "2",
            "--train-images",
            "64",
            "--valid-images",
            "16",
            "--test-images",
            "8",
            "--out",
            run,
        ],
    );
    // Training kept the best epoch by validation BLEU-4 and reported every epoch.
    let report = json_file(&Path::new(run).join("report.json"));
    let epochs = report["validation"].as_array().unwrap();
    assert_eq!(epochs.len(), 2, "{report:#}");
    for e in epochs {
        assert_eq!(e["images"], 16);
        assert!(e["scores"]["cider"].as_f64().is_some(), "{e}");
    }
    let best = report["best"]["epoch"].as_u64().unwrap();
    let best_bleu = report["best"]["scores"]["bleu"][3].as_f64().unwrap();
    for e in epochs {
        assert!(e["scores"]["bleu"][3].as_f64().unwrap() <= best_bleu);
    }
    let weights = std::fs::read(Path::new(run).join("model.mpk")).unwrap();
    let checkpoint = std::fs::read(Path::new(run).join(format!("checkpoint/model-{best}.mpk")));
    assert_eq!(
        Some(weights),
        checkpoint.ok(),
        "the run's weights are the best epoch's ({best})"
    );

    let (results, references) = (dir.join("results.json"), dir.join("refs.json"));
    let (stdout, _) = run_ok(
        "eval",
        &[
            "model",
            "--model",
            run,
            "--split",
            "test",
            "--json",
            "--results-out",
            results.to_str().unwrap(),
            "--references-out",
            references.to_str().unwrap(),
        ],
    );
    let model_scores: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(model_scores["images"], 8);
    assert_eq!(model_scores["split"], "test");
    assert!(model_scores["shapes"]["all_correct"].as_f64().is_some());
    let written = json_file(&results);
    assert_eq!(written.as_array().unwrap().len(), 8);
    assert_eq!(
        json_file(&references)["annotations"]
            .as_array()
            .unwrap()
            .len(),
        40
    );

    // Other data for a shapes run: refused, with the flags to leave out.
    let out = exec(
        "eval",
        &["model", "--model", run, "--data-dir", dir.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("trained on the shapes scenes")
            && stderr.contains("leave out --dataset and --data-dir"),
        "{stderr}"
    );

    let out = score(&results, &references);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rescored: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    for name in METRICS {
        let (a, b) = (
            rescored[name].as_f64().unwrap(),
            model_scores[name].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-12, "{name}: {a} vs {b}");
    }

    // One result missing: refused, the image named.
    let mut fewer = written.as_array().unwrap().clone();
    let dropped = fewer.remove(3)["image_id"].clone();
    std::fs::write(&results, serde_json::to_string(&fewer).unwrap()).unwrap();
    let out = score(&results, &references);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 images of") && stderr.contains(&format!("have no caption: {dropped}")),
        "{stderr}"
    );
    // A broken file: named with its line.
    std::fs::write(&results, "[{\"image_id\": 1,\n  \"caption\": }]").unwrap();
    let out = score(&results, &references);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("results.json:2:"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_run_on_a_dataset_folder_captions_its_dev_split_by_file_name() {
    let dir = temp_dir("eval-flickr8k");
    let data = dir.join("flickr8k");
    flickr8k_fixture(&data);
    let run = dir.join("run");
    let mut flags = quick_flickr8k_flags(&data);
    flags.extend(["--out".into(), run.to_str().unwrap().into()]);
    run_ok(
        "train",
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let eval_dev = |flags: &[&str]| {
        let mut args = vec!["model", "--model", run.to_str().unwrap(), "--split", "dev"];
        args.extend(flags);
        run_ok("eval", &args)
    };
    let results = dir.join("results.json");
    let (stdout, stderr) = eval_dev(&[
        "--beam-size",
        "1,2",
        "--results-out",
        results.to_str().unwrap(),
    ]);
    assert!(stderr.contains("Captioning 2 dev images"), "{stderr}");
    assert_eq!(
        stdout.matches("Held-out dev images: 2").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("CIDEr-D"), "{stdout}");
    let beam2 = json_file(&dir.join("results.beam2.json"));
    let ids: Vec<&str> = beam2
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["6.jpg", "7.jpg"]);

    // The run's export scores as the run does, given the folder of its data (which an export
    // does not hold); its card then shows those scores and the notes given.
    let export = dir.join("export");
    let export = export.to_str().unwrap();
    run_ok(
        "export",
        &["--model", run.to_str().unwrap(), "--out", export],
    );
    let out = exec("eval", &["model", "--model", export, "--split", "dev"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "{export} is an exported model, which does not say where its dataset (flickr8k) \
             is: pass --data-dir"
        )),
        "{}",
        text(&out.stderr)
    );
    let (of_run, _) = eval_dev(&["--beam-size", "1,2", "--json"]);
    // Both beam sizes caption from one encoding of the pictures, each as it does alone.
    let (beam2_alone, _) = eval_dev(&["--beam-size", "2", "--json"]);
    assert_eq!(of_run.lines().nth(1), beam2_alone.lines().next());
    let data_dir = data.to_str().unwrap();
    let (of_export, _) = run_ok(
        "eval",
        &[
            "model",
            "--model",
            export,
            "--split",
            "dev",
            "--data-dir",
            data_dir,
            "--beam-size",
            "1,2",
            "--json",
        ],
    );
    assert_eq!(of_export, of_run);
    let scores = dir.join("scores.jsonl");
    let notes = dir.join("notes.md");
    std::fs::write(&scores, &of_export).unwrap();
    std::fs::write(
        &notes,
        "---\nlicense: other\n---\n\n## What it gets wrong\nDogs.\n",
    )
    .unwrap();
    run_ok(
        "export",
        &[
            "--model",
            run.to_str().unwrap(),
            "--out",
            export,
            "--scores",
            scores.to_str().unwrap(),
            "--notes",
            notes.to_str().unwrap(),
        ],
    );
    let card = std::fs::read_to_string(dir.join("export/README.md")).unwrap();
    assert!(
        card.starts_with("---\nlicense: other\npipeline_tag: image-to-text\n"),
        "{card}"
    );
    assert!(card.contains("      name: BLEU-4 (beam 2)\n"), "{card}");
    assert!(card.contains("\n| dev | 2 | 1 | "), "{card}");
    assert!(card.ends_with("\n## What it gets wrong\nDogs.\n"), "{card}");

    // Without --beam-size and --max-len, eval searches as the run's config.json says: as its
    // validation and final report did.
    let config_path = run.join("config.json");
    let mut config = json_file(&config_path);
    config["search"] = serde_json::json!({"beam_size": 2, "max_len": 3});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let short = dir.join("short.json");
    let (stdout, _) = eval_dev(&["--json", "--results-out", short.to_str().unwrap()]);
    let scores: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(scores["beam_size"], 2, "{stdout}");
    for result in json_file(&short).as_array().unwrap() {
        let words = result["caption"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count();
        assert!(words <= 3, "{result}");
    }

    // The fixture has no test split: said plainly.
    let out = exec(
        "eval",
        &["model", "--model", run.to_str().unwrap(), "--split", "test"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the test split has no captioned image"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

//! The captioner that comes with the project (`artifacts/pretrained/flickr8k-lite2/`), as a
//! newcomer meets it: `infer`, `serve` and `eval model` with no model named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{flickr8k_fixture, temp_dir, text};
use crate::serve_cli::{http, Serving};

/// The shipped folder, in this source tree.
pub fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/pretrained/flickr8k-lite2")
}

/// Runs `bin` from the source tree's root with `args`, with `$CAPTIONER_MODEL` set to
/// `model` or unset.
pub fn run(bin: &str, args: &[&str], model: Option<&Path>) -> Output {
    let exe = match bin {
        "infer" => env!("CARGO_BIN_EXE_infer"),
        "eval" => env!("CARGO_BIN_EXE_eval"),
        "serve" => env!("CARGO_BIN_EXE_serve"),
        other => panic!("no binary {other}"),
    };
    let mut command = Command::new(exe);
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CAPTIONER_MODEL");
    if let Some(model) = model {
        command.env("CAPTIONER_MODEL", model);
    }
    command.output().expect("binary runs")
}

/// The captions of the test photos by the f32 run the shipped f16 files were exported from
/// (`photos.f32.tsv`, written by the folder's build.sh): `path<TAB>caption` lines.
pub fn f32_captions() -> String {
    std::fs::read_to_string(shipped().join("photos.f32.tsv")).unwrap()
}

#[test]
fn infer_with_no_model_captions_real_photos_with_the_shipped_f16_model_as_its_f32_run_did() {
    let out = run("infer", &["tests/fixtures/photos"], None);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("Model: the shipped Flickr8k captioner ("),
        "{stderr}"
    );
    let captions = text(&out.stdout);
    assert_eq!(captions, f32_captions());
    assert_eq!(captions.lines().count(), 4);
    for line in captions.lines() {
        let (_, caption) = line.split_once('\t').unwrap();
        assert!(caption.split_whitespace().count() >= 4, "{line}");
    }
}

#[test]
fn serve_with_no_model_answers_with_the_shipped_model() {
    let server = Serving::start(&["--port", "0"]);
    assert!(
        server
            .said
            .starts_with("Model: the shipped Flickr8k captioner ("),
        "{}",
        server.said
    );
    let photo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos/cat.jpg"))
            .unwrap();
    let (status, body) = http(&server.address, "POST", "/caption", &photo);
    drop(server);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want = f32_captions()
        .lines()
        .find_map(|l| l.strip_prefix("tests/fixtures/photos/cat.jpg\t"))
        .unwrap()
        .to_string();
    assert_eq!(answer["caption"].as_str().unwrap(), want);
}

#[test]
fn eval_model_with_no_model_scores_the_shipped_one_on_the_data_given() {
    let dir = temp_dir("shipped-eval");
    let data = dir.join("flickr8k");
    flickr8k_fixture(&data);
    let out = run(
        "eval",
        &[
            "model",
            "--split",
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("Model: the shipped Flickr8k captioner ("),
        "{stderr}"
    );
    let scores: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(
        (scores["images"].as_u64(), scores["beam_size"].as_u64()),
        (Some(2), Some(3))
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_truncated_or_foreign_file_in_the_shipped_folder_is_named() {
    let dir = temp_dir("shipped-broken");
    let copy = dir.join("flickr8k-lite2");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["model.safetensors", "config.json", "vocab.json"] {
        std::fs::copy(shipped().join(file), copy.join(file)).unwrap();
    }
    let photo = ["tests/fixtures/photos/cat.jpg"];

    // The copy captions as the shipped folder does: what breaks below is the file alone.
    let out = run("infer", &photo, Some(&copy));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("(from CAPTIONER_MODEL)"));

    let weights = copy.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 1000]).unwrap();
    let out = run("infer", &photo, Some(&copy));
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!(
            "{}: not a readable safetensors file",
            weights.display()
        )),
        "{said}"
    );
    std::fs::write(&weights, &bytes).unwrap();

    // A vocabulary that is not the one the weights were trained with.
    let vocab = copy.join("vocab.json");
    let mut words: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vocab).unwrap()).unwrap();
    let list = words["words"]
        .as_array_mut()
        .expect("a list of words in vocab.json");
    list.swap(10, 11);
    std::fs::write(&vocab, words.to_string()).unwrap();
    let out = run("infer", &photo, Some(&copy));
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(said.contains(&vocab.display().to_string()), "{said}");
    std::fs::remove_dir_all(dir).ok();
}

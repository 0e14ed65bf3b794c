//! `export` as a user runs it: a run written as a folder to share, that `infer` reads as it
//! reads the run.

use captioner_datasets::shapes::{ShapesConfig, Split};

use crate::common::{exec, temp_dir, text, untrained_run};

/// `infer --json` on `pictures` with `model`: each picture's caption and score.
fn captions(model: &str, pictures: &[&str]) -> Vec<(String, f64)> {
    let args = [&["--model", model, "--json"][..], pictures].concat();
    let out = exec("infer", &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            let answer: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                answer["caption"].as_str().unwrap().to_string(),
                answer["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_exported_run_captions_as_the_run_does_in_f32_and_close_to_it_in_f16() {
    let dir = temp_dir("export");
    let run = untrained_run(&dir);
    let run = run.root().to_str().unwrap();
    let pictures: Vec<String> = ShapesConfig::default().scenes(Split::Test)[..4]
        .iter()
        .enumerate()
        .map(|(i, scene)| {
            let path = dir.join(format!("scene{i}.png"));
            scene.render(64).save(&path).unwrap();
            path.to_str().unwrap().to_string()
        })
        .collect();
    let pictures: Vec<&str> = pictures.iter().map(String::as_str).collect();

    let full = dir.join("full");
    let half = dir.join("half");
    let (full, half) = (full.to_str().unwrap(), half.to_str().unwrap());
    let out = exec("export", &["--model", run, "--out", full]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("model.safetensors"));
    let out = exec(
        "export",
        &["--model", run, "--out", half, "--precision", "f16"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for file in [
        "model.safetensors",
        "config.json",
        "vocab.json",
        "README.md",
    ] {
        assert!(dir.join("half").join(file).is_file(), "{file}");
    }
    let size = |folder: &str| {
        std::fs::metadata(dir.join(folder).join("model.safetensors"))
            .unwrap()
            .len() as f64
    };
    let ratio = size("half") / size("full");
    assert!(
        (0.49..0.52).contains(&ratio),
        "f16 is {ratio} of f32's size"
    );
    let card = std::fs::read_to_string(dir.join("half/README.md")).unwrap();
    assert!(
        card.starts_with("---\npipeline_tag: image-to-text\n"),
        "{card}"
    );

    let of_run = captions(run, &pictures);
    assert_eq!(of_run.len(), pictures.len());
    assert_eq!(captions(full, &pictures), of_run);
    for ((caption, score), (want, want_score)) in captions(half, &pictures).iter().zip(&of_run) {
        let gap = (score - want_score).abs() / want_score.abs().max(1.0);
        assert!(
            gap < 0.02,
            "f16 \"{caption}\" {score} against f32 \"{want}\" {want_score}"
        );
    }

    // A file cut short is named, with what to do.
    let weights = dir.join("half/model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    let out = exec("infer", &["--model", half, pictures[0]]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!(
            "{}: not a readable safetensors file",
            weights.display()
        )),
        "{said}"
    );
    std::fs::remove_dir_all(dir).ok();
}

//! `export` as a user runs it: a run written as a folder to share, that `infer` reads as it
//! reads the run.

use captioner_datasets::shapes::{ShapesConfig, Split};

use burn::tensor::{Tensor, TensorData};
use captioner_model::{
    teacher_forced_loss, Batching, Captioning, Ensemble, ModelFiles, Prepared, Shapes,
};
use image::RgbImage;

use crate::common::{exec, temp_dir, text, untrained_run, Cpu};

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

/// The scores `[captions, steps, vocab]` the model in folder `model` gives each next word of
/// `captions`, teacher-forced, caption `i` on picture `i`, flattened.
fn next_word_scores(model: &str, pictures: &[&str], captions: &[String]) -> Vec<f32> {
    let model = Captioning::<Cpu>::load(&ModelFiles::new(model), &Default::default()).unwrap();
    let one = Ensemble::one(&model);
    let pictures: Vec<Prepared> = pictures
        .iter()
        .map(|path| one.prepare(&image::open(path).unwrap().to_rgb8()))
        .collect();
    let firsts: Vec<&RgbImage> = pictures.iter().map(Prepared::first).collect();
    let batching = Batching {
        batch_size: firsts.len(),
        shapes: Shapes::Fixed,
    };
    let features = model.encode(&firsts, batching);
    let ids: Vec<Vec<u32>> = captions.iter().map(|c| model.vocab.encode(c)).collect();
    let steps = ids.iter().map(Vec::len).max().unwrap();
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let tokens: Vec<i64> = ids
        .iter()
        .flat_map(|c| (0..steps).map(|t| c.get(t).map_or(0, |&id| id as i64)))
        .collect();
    let tokens = Tensor::from_data(
        TensorData::new(tokens, [captions.len(), steps]),
        model.device(),
    );
    teacher_forced_loss(
        &model.model.decoder,
        0.0,
        features,
        tokens,
        &lengths,
        Shapes::Fixed,
    )
    .logits
    .into_data()
    .to_vec()
    .unwrap()
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
    // In f16 the search's choices may differ where two words score alike (an untrained
    // model's scores are all alike), so the f16 model is compared word by word on the f32
    // run's captions: every score it gives is the run's to within f16's rounding.
    assert_eq!(captions(half, &pictures).len(), pictures.len());
    let said: Vec<String> = of_run.into_iter().map(|(caption, _)| caption).collect();
    let want = next_word_scores(run, &pictures, &said);
    let got = next_word_scores(half, &pictures, &said);
    let range = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let gap = want
        .iter()
        .zip(&got)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(range > 0.05, "the run's scores are all near 0 ({range})");
    assert!(
        gap < 0.01 * range,
        "f16 scores differ by {gap} from the run's, whose largest is {range}"
    );

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

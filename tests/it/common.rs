//! Helpers shared by the command-line tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::config::Config;
use burn::module::Module;
use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_datasets::Vocab;
use captioner_training::run_dir::{RunDir, WeightsRecorder};
use captioner_training::train::model_config;
use captioner_training::TrainConfig;

/// The backend these tests load models with, to read or write a run's weights: the one the
/// binaries run by default, so that this test binary compiles the model for as few backends
/// as it can.
#[cfg(feature = "flex")]
pub type Cpu = burn::backend::Flex;
#[cfg(not(feature = "flex"))]
pub type Cpu = burn::backend::NdArray;

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("captioner-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one of the binaries with `args`.
pub fn exec(bin: &str, args: &[&str]) -> Output {
    let exe = match bin {
        "train" => env!("CARGO_BIN_EXE_train"),
        "infer" => env!("CARGO_BIN_EXE_infer"),
        "features" => env!("CARGO_BIN_EXE_features"),
        "eval" => env!("CARGO_BIN_EXE_eval"),
        "export" => env!("CARGO_BIN_EXE_export"),
        other => panic!("no binary {other}"),
    };
    Command::new(exe).args(args).output().expect("binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A Flickr8k folder in the original layout: 6 train pictures (red or blue walls, odd sizes),
/// 2 dev ones, a broken JPEG and a caption line for a bogus file name.
pub fn flickr8k_fixture(dir: &Path) {
    let images = dir.join("Flicker8k_Dataset");
    std::fs::create_dir_all(&images).unwrap();
    let text_dir = dir.join("Flickr8k_text");
    std::fs::create_dir_all(&text_dir).unwrap();
    let mut tokens = String::new();
    let mut train = String::new();
    for i in 0..8 {
        let (colour, word) = if i % 2 == 0 {
            ([220, 30, 30], "red")
        } else {
            ([30, 30, 220], "blue")
        };
        let name = format!("{i}.jpg");
        // Odd sizes, as real photos have.
        captioner_datasets::image::RgbImage::from_pixel(40 + i, 30, ::image::Rgb(colour))
            .save(images.join(&name))
            .unwrap();
        for n in 0..2 {
            tokens.push_str(&format!("{name}#{n}\tA {word} wall .\n"));
        }
        let list = if i < 6 {
            &mut train
        } else {
            &mut String::new()
        };
        list.push_str(&format!("{name}\n"));
    }
    let jpeg = std::fs::read(images.join("0.jpg")).unwrap();
    std::fs::write(images.join("broken.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    tokens.push_str("broken.jpg#0\tA broken picture .\n");
    tokens.push_str("0.jpg.1#0\tA bogus name .\n");
    train.push_str("broken.jpg\n");
    std::fs::write(text_dir.join("Flickr8k.token.txt"), tokens).unwrap();
    std::fs::write(text_dir.join("Flickr_8k.trainImages.txt"), train).unwrap();
    std::fs::write(text_dir.join("Flickr_8k.devImages.txt"), "6.jpg\n7.jpg\n").unwrap();
}

/// `train` flags for one quick epoch of a tiny model on the fixture folder `data`.
pub fn quick_flickr8k_flags(data: &Path) -> Vec<String> {
    [
        "--dataset",
        "flickr8k",
        "--data-dir",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--embed-dim",
        "16",
        "--attention-dim",
        "16",
        "--hidden-dim",
        "32",
        "--min-word-freq",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

/// SHA-256 of the weights of the model in the run folder `dir` (values only).
pub fn weights_of(dir: &Path) -> String {
    use captioner_model::{Captioning, ModelFiles};
    let model = Captioning::<Cpu>::load(&ModelFiles::new(dir), &Default::default()).unwrap();
    captioner_training::feature_cache::weights_sha256(&model.model)
}

/// A run folder holding an untrained model: enough for `infer` to load and caption.
pub fn untrained_run(dir: &Path) -> RunDir {
    let run = RunDir::new(dir.join("run"));
    std::fs::create_dir_all(run.root()).unwrap();
    let config = TrainConfig::default();
    let scenes = ShapesConfig::default().scenes(Split::Valid);
    let captions: Vec<String> = scenes.iter().flat_map(|s| s.captions()).collect();
    let vocab = Vocab::build(captions.iter().map(String::as_str), 1);
    vocab.save(&run.vocab()).unwrap();
    let model = model_config(&config, vocab.len());
    model.save(run.model_config()).unwrap();
    run.save_train_config(&config).unwrap();
    model
        .init::<Cpu>(&Default::default())
        .save_file(run.weights(), &WeightsRecorder::new())
        .unwrap();
    run
}

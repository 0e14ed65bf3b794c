//! The binaries as a user runs them: `train` (fresh run, then resume) and `infer` on good
//! and bad pictures.

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_datasets::Vocab;
use captioner_model::{Captioning, ModelFiles};
use captioner_training::run_dir::{RunDir, WeightsRecorder};
use captioner_training::train::model_config;
use captioner_training::TrainConfig;

use crate::common::{
    exec, flickr8k_fixture, quick_flickr8k_flags, temp_dir, text, weights_of, Cpu,
};

/// A run folder holding an untrained model: enough for `infer` to load and caption.
fn untrained_run(dir: &Path) -> RunDir {
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

#[test]
fn infer_captions_good_pictures_and_reports_bad_ones() {
    let dir = temp_dir("infer");
    let run = untrained_run(&dir);
    let model = run.root().to_str().unwrap();
    let scene = &ShapesConfig::default().scenes(Split::Test)[0];
    let colour = dir.join("scene.png");
    scene.render(64).save(&colour).unwrap();
    let gray = dir.join("gray.png");
    image::imageops::grayscale(&scene.render(100))
        .save(&gray)
        .unwrap();
    let not_image = dir.join("notes.jpg");
    std::fs::write(&not_image, "this is not a picture").unwrap();
    let missing = dir.join("missing.png");

    // Good pictures, any size and grayscale included: one `path<TAB>caption` line each.
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            colour.to_str().unwrap(),
            gray.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(&format!("{}\t", colour.display())));
    assert!(lines[1].starts_with(&format!("{}\t", gray.display())));

    // JSON lines with greedy decoding.
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            "--json",
            "--beam-size",
            "1",
            colour.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(json["image"], colour.display().to_string());
    let words: Vec<&str> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(json["caption"], words.join(" "));
    assert!(json["score"].as_f64().unwrap() <= 0.0);

    // Bad pictures are named on stderr and skipped; the good one is still captioned; exit 1.
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            missing.to_str().unwrap(),
            not_image.to_str().unwrap(),
            colour.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("missing.png") && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("notes.jpg") && stderr.contains("not a readable image"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);

    // A folder that is not a run.
    let out = exec(
        "infer",
        &["--model", dir.to_str().unwrap(), colour.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no trained model"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn infer_walks_folders_and_stdin_and_writes_caption_files_attention_pictures_and_a_page() {
    use captioner::attention_image::{grid_shape, GAP, LABEL_HEIGHT};
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = temp_dir("infer-folders");
    let run = untrained_run(&dir);
    let model = run.root().to_str().unwrap();
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("park/deeper")).unwrap();
    let scenes = ShapesConfig::default().scenes(Split::Test);
    let names = [
        "b.png",
        "a.jpg",
        "park/c.png",
        "park/deeper/d.PNG",
        "park/e.png",
    ];
    for (scene, name) in scenes.iter().zip(names) {
        scene.render(48).save(photos.join(name)).unwrap();
    }
    std::fs::write(photos.join("park/broken.jpg"), "not a picture").unwrap();
    std::fs::write(photos.join("park/notes.txt"), "not looked at").unwrap();
    let extra = dir.join("extra.png");
    scenes[5].render(40).save(&extra).unwrap();

    let out_dir = dir.join("captions");
    let attention = dir.join("attention");
    let page = dir.join("page.html");
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args([
            "--model",
            model,
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
            "--attention-dir",
            attention.to_str().unwrap(),
            "--html",
            page.to_str().unwrap(),
            "--batch-size",
            "2",
            photos.to_str().unwrap(),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", extra.display()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    // The broken file is named and skipped; the rest are captioned; exit 1.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let images: Vec<String> = lines
        .iter()
        .map(|l| l["image"].as_str().unwrap().to_string())
        .collect();
    // The folder in path order, then the path from stdin.
    let expected: Vec<String> = [
        "a.jpg",
        "b.png",
        "park/c.png",
        "park/deeper/d.PNG",
        "park/e.png",
    ]
    .iter()
    .map(|n| photos.join(n).display().to_string())
    .chain([extra.display().to_string()])
    .collect();
    assert_eq!(images, expected);

    let side = Captioning::<Cpu>::load(&ModelFiles::new(run.root()), &Default::default())
        .unwrap()
        .image_size() as u32;
    for (line, relative) in
        lines
            .iter()
            .zip(["a", "b", "park/c", "park/deeper/d", "park/e", "extra"])
    {
        let caption = line["caption"].as_str().unwrap();
        // A caption file under the same subfolders, and beam 3's two other captions.
        let written = std::fs::read_to_string(out_dir.join(format!("{relative}.txt"))).unwrap();
        assert_eq!(written, format!("{caption}\n"));
        assert!(
            line["alternatives"].as_array().unwrap().len() <= 2,
            "{line}"
        );
        // One panel for the picture and one per word.
        let words = line["tokens"].as_array().unwrap().len() as u32;
        let grid = image::open(attention.join(format!("{relative}.png"))).unwrap();
        let (columns, rows) = grid_shape(words + 1);
        assert_eq!(
            (grid.width(), grid.height()),
            (
                GAP + columns * (side + GAP),
                GAP + rows * (LABEL_HEIGHT + side + GAP)
            ),
            "{relative}: {words} words"
        );
    }
    assert!(!out_dir.join("park/broken.txt").exists());

    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<section class=\"picture\">").count(), 6);
    assert_eq!(html.matches("data:image/jpeg;base64,").count(), 6);
    for line in &lines {
        let caption = line["caption"].as_str().unwrap();
        assert!(html.contains(&format!("<p class=\"caption\">{caption}</p>")));
    }
    // An untrained model gives most pictures one caption: said when it does.
    let said = stderr.contains("pictures got the same caption");
    let captions: Vec<&str> = lines
        .iter()
        .map(|l| l["caption"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        captioner::report::dominant_caption(captions.iter().copied()).is_some(),
        "{stderr}"
    );

    // Two pictures that would write the same caption file: refused before any work.
    let twin = dir.join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    scenes[0].render(32).save(twin.join("x.png")).unwrap();
    scenes[1].render(32).save(twin.join("x.jpg")).unwrap();
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            "--out",
            out_dir.to_str().unwrap(),
            twin.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("would both write"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn train_writes_a_run_that_resumes_and_that_infer_reads() {
    let dir = temp_dir("train");
    let out_dir = dir.join("run");
    let out = out_dir.to_str().unwrap();
    let small = [
        "--train-images",
        "16",
        "--valid-images",
        "8",
        "--test-images",
        "8",
    ];
    let first = exec(
        "train",
        &[&["--epochs", "1", "--out", out][..], &small].concat(),
    );
    assert!(
        first.status.success(),
        "{}\n{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let stdout = text(&first.stdout);
    assert!(stdout.contains("BLEU-1..4"), "{stdout}");
    for file in [
        "config.json",
        "model.json",
        "vocab.json",
        "model.mpk",
        "report.json",
    ] {
        assert!(out_dir.join(file).exists(), "{file} missing");
    }
    assert!(out_dir.join("checkpoint/model-1.mpk").exists());

    // Same folder again without --resume: refused, nothing overwritten.
    let again = exec("train", &["--epochs", "1", "--out", out]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--resume"),
        "{}",
        text(&again.stderr)
    );

    let resumed = exec("train", &["--resume", "--epochs", "2", "--out", out]);
    assert!(
        resumed.status.success(),
        "{}\n{}",
        text(&resumed.stdout),
        text(&resumed.stderr)
    );
    assert!(text(&resumed.stdout).contains("from epoch 1"));
    // The closing line's time is this invocation's: it says which epochs that covers.
    assert!(
        text(&resumed.stdout).contains("(epoch 2, resumed after epoch 1)"),
        "{}",
        text(&resumed.stdout)
    );
    assert!(out_dir.join("checkpoint/model-2.mpk").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["epochs"], 2);
    assert_eq!(report["resumed_after"], 1);

    let picture = dir.join("scene.png");
    ShapesConfig::default().scenes(Split::Test)[1]
        .render(64)
        .save(&picture)
        .unwrap();
    let captioned = exec("infer", &["--model", out, picture.to_str().unwrap()]);
    assert!(captioned.status.success(), "{}", text(&captioned.stderr));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_fixed_seed_repeats_a_run_weight_for_weight_with_several_loader_threads() {
    let dir = temp_dir("repeat");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let done = exec(
            "train",
            &[
                "--train-images",
                "40",
                "--valid-images",
                "8",
                "--test-images",
                "8",
                "--epochs",
                "2",
                "--batch-size",
                "8",
                "--workers",
                "3",
                "--seed",
                seed,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            done.status.success(),
            "{}\n{}",
            text(&done.stdout),
            text(&done.stderr)
        );
        weights_of(&out)
    };
    let first = run("first", "9");
    assert_eq!(first, run("again", "9"), "same seed, same weights");
    assert_ne!(first, run("other", "10"), "another seed, other weights");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_self_critical_stage_starts_from_a_finished_run_and_resumes() {
    let dir = temp_dir("scst");
    let first = dir.join("first");
    let stage = dir.join("stage");
    let small = [
        "--train-images",
        "16",
        "--valid-images",
        "8",
        "--test-images",
        "8",
    ];
    let run = |args: &[&str]| {
        let out = exec("train", &[args, &small].concat());
        let output = text(&out.stdout) + &text(&out.stderr);
        assert!(out.status.success(), "{output}");
        output
    };
    run(&["--epochs", "1", "--out", first.to_str().unwrap()]);
    let scst = [
        "--scst",
        "--init-from",
        first.to_str().unwrap(),
        "--out",
        stage.to_str().unwrap(),
    ];
    let output = run(&[&scst[..], &["--epochs", "1"]].concat());
    assert!(output.contains("Starting from the weights of"), "{output}");
    assert!(
        output.contains("Self-critical training: 5 samples an image"),
        "{output}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stage.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["objective"]["kind"], "self-critical");
    assert_eq!(config["optimizer"]["lr"], 2e-4);
    assert_eq!(config["optimizer"]["lr_schedule"], "cosine");
    assert_eq!(config["model"]["dropout"], 0.0);
    assert_eq!(
        std::fs::read(stage.join("vocab.json")).unwrap(),
        std::fs::read(first.join("vocab.json")).unwrap(),
        "the stage keeps the first run's vocabulary"
    );
    let resumed = run(&[
        "--resume",
        "--epochs",
        "2",
        "--out",
        stage.to_str().unwrap(),
    ]);
    assert!(resumed.contains("from epoch 1"), "{resumed}");
    assert!(stage.join("checkpoint/model-2.mpk").exists());

    // A stage keeps the network and the decoder's sizes of the run it starts from.
    let refused = exec(
        "train",
        &[&scst[..], &["--hidden-dim", "64"], &small].concat(),
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("drop --hidden-dim"),
        "{}",
        text(&refused.stderr)
    );
    // Only a finished run can start a stage.
    let unfinished = exec("train", &["--scst", "--init-from", dir.to_str().unwrap()]);
    assert!(!unfinished.status.success());
    assert!(
        text(&unfinished.stderr).contains("no final model"),
        "{}",
        text(&unfinished.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn train_says_first_which_device_it_chose_and_trains_data_parallel_on_two() {
    let dir = temp_dir("devices");
    let out_dir = dir.join("run");
    let out = exec(
        "train",
        &[
            "--devices",
            "flex:0,flex:1",
            "--epochs",
            "1",
            "--train-images",
            "16",
            "--valid-images",
            "8",
            "--test-images",
            "8",
            "--batch-size",
            "8",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.starts_with("Device: flex; asked for by name"),
        "{stderr}"
    );
    assert!(stdout.contains("Data-parallel on 2 devices"), "{stdout}");
    assert!(out_dir.join("checkpoint/model-1.mpk").exists());

    // Two backends named at once are refused before anything runs.
    let out = exec(
        "train",
        &["--device", "ndarray", "--devices", "flex:0,flex:1"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("name two backends"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn print_config_shows_the_resolved_settings_and_trains_nothing() {
    let dir = temp_dir("print-config");
    let out_dir = dir.join("run");
    let out = exec(
        "train",
        &[
            "--dataset",
            "flickr8k",
            "--data-dir",
            "/nonexistent/flickr8k",
            "--preset",
            "show-attend-tell",
            "--lr",
            "0.001",
            "--out",
            out_dir.to_str().unwrap(),
            "--print-config",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config: TrainConfig = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config.optimizer.lr, 1e-3, "the flag wins");
    assert_eq!(config.model.hidden_dim, 512, "the preset's");
    assert!(!out_dir.exists(), "nothing written");

    // Contradictions are refused as they would be at the start of training.
    let out = exec("train", &["--fine-tune-encoder", "--print-config"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--fine-tune-encoder"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_backend_that_was_not_compiled_in_names_its_cargo_feature() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = exec(
        "train",
        &[
            "--device",
            "cuda",
            "--epochs",
            "1",
            "--out",
            "/nonexistent/x",
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--features cuda"), "{stderr}");
}

/// A Flickr8k-shaped folder: eight photos of two kinds, a truncated JPEG, a bogus name.
#[test]
fn train_on_a_flickr8k_folder_lists_what_it_skips_and_strict_refuses() {
    let dir = temp_dir("flickr8k");
    let data = dir.join("flickr8k");
    flickr8k_fixture(&data);
    // A test split of two more pictures, scored once at the end.
    let mut tokens =
        std::fs::read_to_string(data.join("Flickr8k_text/Flickr8k.token.txt")).unwrap();
    for i in 8..10u32 {
        let name = format!("{i}.jpg");
        image::RgbImage::from_pixel(36, 30 + i, image::Rgb([220, 30, 30]))
            .save(data.join("Flicker8k_Dataset").join(&name))
            .unwrap();
        tokens.push_str(&format!("{name}#0\tA red wall .\n"));
    }
    std::fs::write(data.join("Flickr8k_text/Flickr8k.token.txt"), tokens).unwrap();
    std::fs::write(
        data.join("Flickr8k_text/Flickr_8k.testImages.txt"),
        "8.jpg\n9.jpg\n",
    )
    .unwrap();
    let out_dir = dir.join("run");
    let flags = quick_flickr8k_flags(&data);
    let small: Vec<&str> = flags.iter().map(String::as_str).collect();
    let run = exec(
        "train",
        &[&small[..], &["--out", out_dir.to_str().unwrap()]].concat(),
    );
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    assert!(stdout.contains("train: 6 images, 12 captions"), "{stdout}");
    assert!(stdout.contains("dev: 2 images, 4 captions"), "{stdout}");
    assert!(stdout.contains("1 unreadable image"), "{stdout}");
    assert!(stdout.contains("broken.jpg"), "{stdout}");
    assert!(stdout.contains("Flickr8k.token.txt:18:"), "{stdout}");
    assert!(
        stdout.contains("test: 2 images, 2 captions (scored once, at the end)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dev images (the split that picked the best epoch): 2"),
        "{stdout}"
    );
    assert!(stdout.contains("Held-out test images: 2"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["data"]["skipped"]["unreadable images"], 1);
    assert_eq!(report["eval"]["picked_best_epoch"], true);
    assert_eq!(report["test"]["images"], 2);
    assert_eq!(report["test"]["picked_best_epoch"], false);

    let picture = data.join("Flicker8k_Dataset/1.jpg");
    let out = exec(
        "infer",
        &[
            "--model",
            out_dir.to_str().unwrap(),
            picture.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(picture.to_str().unwrap()));

    // Pictures over the memory budget are decoded by the loader every epoch instead.
    let lazy = exec(
        "train",
        &[
            &small[..],
            &[
                "--image-memory-gb",
                "0",
                "--out",
                dir.join("lazy").to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let lazy_out = text(&lazy.stdout);
    assert!(lazy.status.success(), "{lazy_out}\n{}", text(&lazy.stderr));
    assert!(
        lazy_out.contains("decodes them again every epoch"),
        "{lazy_out}"
    );
    assert!(
        lazy_out.contains("dev images (the split that picked the best epoch): 2"),
        "{lazy_out}"
    );

    // The first images of each split, for a quicker run: the broken picture comes after them.
    let part = exec(
        "train",
        &[
            &small[..],
            &[
                "--train-images",
                "3",
                "--valid-images",
                "1",
                "--out",
                dir.join("part").to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let part_out = text(&part.stdout);
    assert!(part.status.success(), "{part_out}\n{}", text(&part.stderr));
    assert!(
        part_out.contains("only the first 3 images of its train split"),
        "{part_out}"
    );
    assert!(
        part_out.contains("train: 3 images, 6 captions"),
        "{part_out}"
    );
    assert!(!part_out.contains("unreadable"), "{part_out}");
    assert!(
        part_out.contains("dev images (the split that picked the best epoch): 1"),
        "{part_out}"
    );
    // `eval` repeats the run's report on the run's own data, its first dev image; data named
    // by the flags (here the same folder) is read whole.
    let part_dir = dir.join("part");
    for (named, images) in [(false, 1), (true, 2)] {
        let mut flags = vec![
            "model",
            "--model",
            part_dir.to_str().unwrap(),
            "--split",
            "dev",
        ];
        if named {
            flags.extend(["--data-dir", data.to_str().unwrap()]);
        }
        let eval = exec("eval", &flags);
        let eval_out = text(&eval.stdout);
        assert!(eval.status.success(), "{eval_out}\n{}", text(&eval.stderr));
        assert!(
            eval_out.contains(&format!("Held-out dev images: {images} ")),
            "{eval_out}"
        );
    }

    let strict = exec(
        "train",
        &[
            &small[..],
            &["--strict", "--out", dir.join("strict").to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(!strict.status.success());
    let stderr = text(&strict.stderr);
    assert!(stderr.contains("--strict"), "{stderr}");
    assert!(stderr.contains("Flickr8k.token.txt:18:"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cache_features_builds_once_and_is_reused_by_the_next_run() {
    let dir = temp_dir("cache");
    let data = dir.join("flickr8k");
    flickr8k_fixture(&data);
    let cache = dir.join("cache");
    let train = |out: &str| {
        let out = dir.join(out);
        let mut flags = quick_flickr8k_flags(&data);
        flags.extend(["--cache-features", "--cache-dir"].map(String::from));
        flags.push(cache.to_str().unwrap().into());
        flags.extend(["--out".into(), out.to_str().unwrap().into()]);
        let run = exec(
            "train",
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let output = text(&run.stdout) + &text(&run.stderr);
        assert!(run.status.success(), "{output}");
        output
    };
    let first = train("first");
    assert!(first.contains("Feature cache built"), "{first}");
    assert!(first.contains("1 unreadable image"), "{first}");
    assert!(
        first.contains("dev images (the split that picked the best epoch): 2"),
        "{first}"
    );
    let second = train("second");
    assert!(!second.contains("Feature cache built"), "{second}");
    assert!(second.contains("Feature cache: "), "{second}");
    // Read back from the cache's manifest, the broken picture is still reported.
    assert!(second.contains("broken.jpg"), "{second}");
    let caches = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(caches, 1);
    std::fs::remove_dir_all(dir).ok();
}

/// One HTTP/1.1 request to `address`: the status and the body.
fn http(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A refused upload may be answered before it is all sent.
    stream.write_all(body).ok();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok();
    let response = text(&response);
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_answers_pictures_refuses_bad_and_oversized_ones_and_stays_up() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = temp_dir("serve");
    let run = untrained_run(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
        .args([
            "--model",
            run.root().to_str().unwrap(),
            "--port",
            "0",
            "--max-bytes",
            "100000",
            "--max-pixels",
            "1000000",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve stopped: {said}"
        );
        said.push_str(&line);
        if let Some(rest) = line.strip_prefix("Listening on http://") {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    let png = |picture: image::RgbImage| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        picture
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        bytes.into_inner()
    };
    let scene = &ShapesConfig::default().scenes(Split::Test)[0];
    let good = png(scene.render(64));

    let (status, page) = http(&address, "GET", "/", b"");
    assert_eq!(status, 200);
    assert!(page.contains("Drop a picture"), "{page}");

    let (status, body) = http(&address, "POST", "/caption", &good);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let words = answer["tokens"].as_array().unwrap().len() as u32;
    assert!(answer["caption"].is_string() && answer["score"].as_f64().unwrap() <= 0.0);
    assert!(answer["timing_ms"]["total"].as_f64().unwrap() > 0.0);
    assert!(answer.get("attention_png").is_none());

    let (status, body) = http(&address, "POST", "/caption?attention=1", &good);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    use base64::Engine;
    let grid = base64::engine::general_purpose::STANDARD
        .decode(answer["attention_png"].as_str().unwrap())
        .unwrap();
    let grid = image::load_from_memory(&grid).unwrap();
    let side = Captioning::<Cpu>::load(&ModelFiles::new(run.root()), &Default::default())
        .unwrap()
        .image_size() as u32;
    let (columns, _) = captioner::attention_image::grid_shape(words + 1);
    use captioner::attention_image::GAP;
    assert_eq!(grid.width(), GAP + columns * (side + GAP));

    let refused = |body: &[u8], status: u16, says: &str| {
        let (got, answer) = http(&address, "POST", "/caption", body);
        assert_eq!(got, status, "{answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
    };
    refused(b"this is not a picture", 415, "not a readable image");
    refused(&vec![7u8; 150_000], 413, "over the limit of 100000 bytes");
    // Few bytes, but more pixels than allowed.
    refused(
        &png(image::RgbImage::new(1100, 1000)),
        413,
        "1100 x 1000 pixels is over the limit",
    );
    refused(b"", 400, "send a JPEG or PNG picture");

    // Still up, and pictures sent at once are all answered.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| http(&address, "POST", "/caption", &good)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
    }
    child.kill().ok();
    child.wait().ok();
    std::fs::remove_dir_all(dir).ok();
}

/// Needs Debian's `chromium` (`.ci/run` installs it and runs this test):
/// `cargo test --release --test it -- --ignored chromium`.
#[test]
#[ignore = "needs chromium; .ci/run runs it"]
fn the_html_page_shows_every_caption_and_picture_in_headless_chromium() {
    use std::process::Command;

    let dir = temp_dir("chromium");
    let run = untrained_run(&dir);
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for (i, scene) in ShapesConfig::default().scenes(Split::Test)[..3]
        .iter()
        .enumerate()
    {
        scene
            .render(64)
            .save(photos.join(format!("{i}.png")))
            .unwrap();
    }
    let page = dir.join("page.html");
    let out = exec(
        "infer",
        &[
            "--model",
            run.root().to_str().unwrap(),
            "--json",
            "--html",
            page.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let captions: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["caption"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium runs (apt-get install chromium)")
    };
    // The page as chromium parsed it: a section and a caption paragraph per picture.
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", text(&dom.stderr));
    let dom = text(&dom.stdout);
    assert_eq!(
        dom.matches("<section class=\"picture\">").count(),
        3,
        "{dom}"
    );
    for caption in &captions {
        assert!(
            dom.contains(&format!("<p class=\"caption\">{caption}</p>")),
            "{caption}"
        );
    }
    let shot = dir.join("page.png");
    let out = chromium(&[
        "--window-size=1300,900",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shot = image::open(&shot).unwrap().to_rgb8();
    // Pictures were drawn: many pixels are neither the page's white nor its text's gray.
    let coloured = shot
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.max(g).max(b) - r.min(g).min(b) > 60
        })
        .count();
    assert!(
        coloured > 1000,
        "only {coloured} coloured pixels in the screenshot"
    );
    std::fs::remove_dir_all(dir).ok();
}

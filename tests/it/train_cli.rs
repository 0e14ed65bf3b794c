//! `train` as a user runs it: a fresh run, resumed, repeated by its seed, a self-critical
//! stage, the device it chose, `--print-config`, a Flickr8k folder and cached features.

use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_training::TrainConfig;

use crate::common::{exec, flickr8k_fixture, quick_flickr8k_flags, temp_dir, text, weights_of};

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

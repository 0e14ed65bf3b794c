//! The WGPU suite: the same model on a GPU backend, where every new tensor shape compiles and
//! tunes kernels. Built with `--features wgpu` (CI runs it on lavapipe, Mesa's Vulkan device on
//! the CPU: `apt-get install mesa-vulkan-drivers`; slow, but the same shaders as a GPU).
//!
//! - training steps on wgpu (fixed shapes) give the losses that flex (packed shapes) gives;
//! - after a warm-up, steps of other caption lengths, a short last batch and validation with
//!   other images compile and tune no kernel (counted from CubeCL's own logs);
//! - `train`, `infer` and `eval` run on wgpu, caption as on flex, and a run trained on wgpu
//!   resumes on flex.
#![cfg(all(feature = "wgpu", feature = "flex"))]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::data::dataloader::batcher::Batcher;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use captioner::device::WgpuBackend as Wgpu;
use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_datasets::{CaptionItem, Vocab};
use captioner_model::{
    BackboneConfig, Captioner, CaptionerConfig, DecoderConfig, EncoderConfig, Endings,
    SearchConfig, Shapes, SmallCnnConfig,
};
use captioner_training::train::optimizer;
use captioner_training::{CaptionBatcher, FixedBatch, TrainConfig};

use crate::common::{exec, temp_dir, text};

const IMAGE: usize = 32;

/// How CubeCL's full compilation log starts each kernel.
const COMPILED: &str = "[START_KERNEL_COMPILATION]";

/// CubeCL's log files of this test process: one block per kernel compiled (its name, its id
/// with the compile-time settings, and its source), two lines per key tuned.
struct Logs {
    compilations: PathBuf,
    tuning: PathBuf,
}

impl Logs {
    /// (kernels compiled, keys tuned) so far.
    fn counts(&self) -> (usize, usize) {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .matches(what)
                .count()
        };
        (
            read(&self.compilations, COMPILED),
            read(&self.tuning, "Fastest result"),
        )
    }

    /// The names and ids (without their sources) of the kernels compiled after the first
    /// `skip`, to say what a failed count met.
    fn compiled_after(&self, skip: usize) -> String {
        let log = std::fs::read_to_string(&self.compilations).unwrap_or_default();
        log.split(COMPILED)
            .skip(1 + skip)
            .map(|block| block.split("\nsource:").next().unwrap_or(block).trim())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The counts once the device is idle and the logger thread has written everything
    /// (compilations are logged from a thread of their own).
    fn settled_counts<B: Backend>(&self, device: &B::Device) -> (usize, usize) {
        B::sync(device).unwrap();
        let mut counts = self.counts();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.counts();
            if now == counts {
                return now;
            }
            counts = now;
        }
    }
}

/// Points CubeCL's compilation and autotune loggers at fresh files (and its autotune cache at
/// a fresh folder, so that nothing tuned by an earlier run hides a tuning) before any test
/// of this process touches the device; every test that uses the device in this process holds
/// the returned lock, so that one test's kernels never land in another's counts.
fn gpu() -> (&'static Logs, std::sync::MutexGuard<'static, ()>) {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    static GPU: Mutex<()> = Mutex::new(());
    let logs = LOGS.get_or_init(|| {
        use burn::cubecl::config::autotune::AutotuneLogLevel;
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::compilation::CompilationLogLevel;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        let dir = temp_dir("wgpu-logs");
        let logs = Logs {
            compilations: dir.join("compilations.log"),
            tuning: dir.join("autotune.log"),
        };
        let mut config = CubeClRuntimeConfig::default();
        config.compilation.logger.level = CompilationLogLevel::Full;
        config.compilation.logger.file = Some(logs.compilations.clone());
        config.autotune.logger.level = AutotuneLogLevel::Minimal;
        config.autotune.logger.file = Some(logs.tuning.clone());
        config.autotune.cache = CacheConfig::File(dir.join("autotune-cache"));
        CubeClRuntimeConfig::set(config);
        logs
    });
    (logs, GPU.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Shapes scenes with all five captions each, and their vocabulary.
fn scenes(count: usize) -> (Vec<CaptionItem>, Vocab) {
    let shapes = ShapesConfig {
        image_size: IMAGE,
        train: count,
        ..Default::default()
    };
    let scenes = shapes.scenes(Split::Train);
    let captions: Vec<String> = scenes.iter().flat_map(|s| s.captions()).collect();
    let vocab = Vocab::build(captions.iter().map(String::as_str), 1);
    let items = scenes
        .iter()
        .enumerate()
        .map(|(image_id, s)| CaptionItem {
            image: Arc::new(s.render(IMAGE)).into(),
            image_id,
            captions: s.captions().iter().map(|c| vocab.encode(c)).collect(),
        })
        .collect();
    (items, vocab)
}

/// One item per caption (as training batches them), each caption's steps beside it.
fn per_caption(items: &[CaptionItem]) -> Vec<(CaptionItem, usize)> {
    items
        .iter()
        .flat_map(|item| {
            item.captions.iter().map(move |c| {
                let one = CaptionItem {
                    captions: vec![c.clone()],
                    ..item.clone()
                };
                (one, c.len() - 1)
            })
        })
        .collect()
}

fn config(vocab: &Vocab) -> CaptionerConfig {
    let encoder = SmallCnnConfig::new().with_image_size(IMAGE);
    let decoder = DecoderConfig::new(vocab.len(), encoder.feature_dim())
        .with_embed_dim(16)
        .with_attention_dim(12)
        .with_hidden_dim(24)
        .with_dropout(0.0);
    CaptionerConfig::new(EncoderConfig::SmallCnn(encoder), decoder)
}

/// One optimiser step as training takes it; returns the loss.
fn train_step<B: AutodiffBackend>(
    model: Captioner<B>,
    optim: &mut impl Optimizer<Captioner<B>, B>,
    batcher: &CaptionBatcher,
    items: Vec<CaptionItem>,
    device: &B::Device,
) -> (Captioner<B>, f32) {
    let out = model.forward(batcher.batch(items, device));
    let loss = out.loss.clone().into_scalar().elem::<f32>();
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    (optim.step(1e-3, model, grads), loss)
}

#[test]
fn training_steps_on_wgpu_give_the_losses_that_flex_gives() {
    let (_logs, _gpu) = gpu();
    let (items, vocab) = scenes(12);
    let captions: Vec<CaptionItem> = per_caption(&items).into_iter().map(|(c, _)| c).collect();
    let flex_device = FlexDevice;
    let wgpu_device = WgpuDevice::DefaultDevice;
    Flex::seed(&flex_device, 11);
    let on_flex = config(&vocab).init::<Autodiff<Flex>>(&flex_device);
    // The same weights on both backends.
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder.record(on_flex.clone().into_record(), ()).unwrap();
    let on_wgpu = config(&vocab)
        .init::<Autodiff<Wgpu>>(&wgpu_device)
        .load_record(recorder.load(bytes, &wgpu_device).unwrap());

    let train_config = TrainConfig::default();
    let packed = CaptionBatcher::new(IMAGE);
    let fixed = CaptionBatcher::new(IMAGE).with_shapes(Shapes::Fixed, FixedBatch::training(16));
    let (mut a, mut b) = (on_flex, on_wgpu);
    let (mut optim_a, mut optim_b) = (optimizer(&train_config, 1), optimizer(&train_config, 1));
    // Four steps of 16, 16, 16 and 12 captions.
    for (step, batch) in captions.chunks(16).take(4).enumerate() {
        let (next_a, loss_a) = train_step(a, &mut optim_a, &packed, batch.to_vec(), &flex_device);
        let (next_b, loss_b) = train_step(b, &mut optim_b, &fixed, batch.to_vec(), &wgpu_device);
        (a, b) = (next_a, next_b);
        // Lavapipe's shaders round differently from the CPU (0.2% on the first step here);
        // GPUs with TF32 matrix units, which CubeCL uses for f32 products, about as much.
        assert!(
            (loss_a - loss_b).abs() <= 1e-2 * loss_a.abs(),
            "step {step}: flex {loss_a}, wgpu {loss_b}"
        );
    }
}

/// With fixed shapes no step after the warm-up meets a new shape, and the backend the
/// binaries run (no fusion) compiles kernels by shape class only.
#[test]
fn after_a_warm_up_no_step_compiles_or_tunes_a_kernel() {
    let (logs, _gpu) = gpu();
    let (items, vocab) = scenes(16);
    let device = WgpuDevice::DefaultDevice;
    <Wgpu as Backend>::seed(&device, 5);
    let mut model = config(&vocab).init::<Autodiff<Wgpu>>(&device);
    let mut optim = optimizer(&TrainConfig::default(), 1);
    let train = CaptionBatcher::new(IMAGE).with_shapes(Shapes::Fixed, FixedBatch::training(16));
    // Validation batches of three images (their 15 captions fill the 16 rows), as `train`
    // makes them.
    let (valid_size, valid_images) = FixedBatch::validation(16, 5);
    assert_eq!(valid_images, 3);
    let search = SearchConfig {
        beam_size: 3,
        max_len: 12,
        length_penalty: 0.0,
    };
    let validation = |sample: &[usize]| {
        CaptionBatcher::new(IMAGE)
            .with_decode(
                search,
                Arc::new(Endings::of(&vocab)),
                Arc::new(sample.iter().copied().collect()),
            )
            .with_shapes(Shapes::Fixed, valid_size)
    };
    // Captions by length: the short ones fit the bucket of 8 steps, the long ones need 16.
    let mut captions = per_caption(&items);
    captions.sort_by_key(|(_, steps)| *steps);
    let short: Vec<CaptionItem> = captions
        .iter()
        .filter(|c| c.1 <= 8)
        .map(|c| c.0.clone())
        .collect();
    let long: Vec<CaptionItem> = captions
        .iter()
        .filter(|c| c.1 > 8)
        .map(|c| c.0.clone())
        .collect();
    assert!(
        short.len() >= 32 && long.len() >= 32,
        "{} short, {} long",
        short.len(),
        long.len()
    );
    let mixed = |from: usize, n: usize| -> Vec<CaptionItem> {
        let half = n / 2;
        [&short[from..from + half], &long[from..from + n - half]].concat()
    };
    // Training batches, then validation batches (images, and which of them to caption).
    type Validation<'a> = (&'a [CaptionItem], &'a [usize]);
    let mut run = |batches: Vec<Vec<CaptionItem>>, validations: &[Validation]| {
        for batch in batches {
            let (next, loss) = train_step(model.clone(), &mut optim, &train, batch, &device);
            assert!(loss.is_finite());
            model = next;
        }
        for &(images, sample) in validations {
            let out = burn::train::InferenceStep::step(
                &model.valid(),
                validation(sample).batch(images.to_vec(), &device),
            );
            assert_eq!(out.extra.len(), sample.len());
        }
    };

    // Warm-up, what the first steps of an epoch meet: a batch of each width bucket (with
    // fewer images than rows, as nearly every batch of five captions per image has), a full
    // validation batch and a short one.
    run(
        vec![mixed(0, 16), short[..16].to_vec()],
        &[(&items[..3], &[0, 2]), (&items[8..10], &[8, 9])],
    );
    let warm = logs.settled_counts::<Wgpu>(&device);
    assert!(
        warm.0 > 0,
        "the compilation log at {:?} stays empty",
        logs.compilations
    );

    // Other lengths, a short last batch, other validation images and other samples.
    run(
        vec![
            mixed(10, 16),
            long[16..32].to_vec(),
            short[16..23].to_vec(),
            mixed(20, 5),
        ],
        &[
            (&items[10..13], &[10, 11, 12]),
            (&items[13..16], &[14]),
            (&items[5..6], &[5]),
        ],
    );
    let after = logs.settled_counts::<Wgpu>(&device);
    assert_eq!(
        after,
        warm,
        "(kernels compiled, keys tuned) after the warm-up; new kernels:\n{}\nsee {:?} and {:?}",
        logs.compiled_after(warm.0),
        logs.compilations,
        logs.tuning
    );
}

/// `train` on wgpu, then `infer` and `eval` on wgpu and flex, then the same run resumed on
/// flex: one model, two backends. Its kernels are compiled in the binaries' processes, so it
/// runs beside the tests of this process (it holds no lock of theirs).
#[test]
fn a_run_trained_on_wgpu_captions_the_same_on_flex_and_resumes_there() {
    let dir = temp_dir("wgpu-run");
    let run = dir.join("run");
    let out = run.to_str().unwrap();
    let small = [
        "--train-images",
        "24",
        "--valid-images",
        "8",
        "--test-images",
        "8",
        "--val-caption-images",
        "4",
        "--batch-size",
        "16",
    ];
    let trained = exec(
        "train",
        &[
            &["--device", "wgpu", "--epochs", "1", "--out", out][..],
            &small,
        ]
        .concat(),
    );
    let stderr = text(&trained.stderr);
    assert!(
        trained.status.success(),
        "{}\n{stderr}",
        text(&trained.stdout)
    );
    // Mesa may print a line of its own first (lavapipe without a display).
    assert!(
        stderr.lines().any(|l| l.starts_with("Device: wgpu (")),
        "{stderr}"
    );

    let pictures: Vec<String> = ShapesConfig::default().scenes(Split::Test)[..3]
        .iter()
        .enumerate()
        .map(|(i, scene)| {
            let path = dir.join(format!("scene{i}.png"));
            scene.render(64).save(&path).unwrap();
            path.display().to_string()
        })
        .collect();
    let caption = |device: &str| {
        let mut args = vec!["--model", out, "--device", device, "--json"];
        args.extend(pictures.iter().map(String::as_str));
        let out = exec("infer", &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    v["caption"].as_str().unwrap().to_string(),
                    v["score"].as_f64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (on_wgpu, on_flex) = (caption("wgpu"), caption("flex"));
    assert_eq!(on_wgpu.len(), 3);
    for ((a, score_a), (b, score_b)) in on_wgpu.iter().zip(&on_flex) {
        assert_eq!(a, b);
        assert!((score_a - score_b).abs() < 1e-3, "{score_a} vs {score_b}");
    }

    let scores = |device: &str| {
        let out = exec(
            "eval",
            &[
                "model",
                "--model",
                out,
                "--device",
                device,
                "--json",
                "--beam-size",
                "2",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(scores("wgpu"), scores("flex"));

    let resumed = exec(
        "train",
        &[
            "--resume", "--device", "flex", "--epochs", "2", "--out", out,
        ],
    );
    assert!(
        resumed.status.success(),
        "{}\n{}",
        text(&resumed.stdout),
        text(&resumed.stderr)
    );
    assert!(run.join("checkpoint/model-2.mpk").exists());

    // A self-critical stage from it, on wgpu: samples, rewards and the policy-gradient step
    // under fixed shapes, for two steps of four pictures (each kernel it compiles costs more
    // on lavapipe than its steps).
    let stage = dir.join("scst");
    let scst = exec(
        "train",
        &[
            &[
                "--scst",
                "--init-from",
                out,
                "--device",
                "wgpu",
                "--epochs",
                "1",
                "--out",
                stage.to_str().unwrap(),
            ][..],
            &[
                "--train-images",
                "8",
                "--valid-images",
                "8",
                "--test-images",
                "8",
            ],
            &["--val-caption-images", "4", "--batch-size", "20"],
        ]
        .concat(),
    );
    assert!(
        scst.status.success(),
        "{}\n{}",
        text(&scst.stdout),
        text(&scst.stderr)
    );
    assert!(stage.join("model.mpk").exists());
    std::fs::remove_dir_all(dir).ok();
}

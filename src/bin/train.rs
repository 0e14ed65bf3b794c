//! `train`: trains a captioner and reports how well it captions held-out images.
//!
//! With no argument it trains on the embedded "shapes" dataset on the CPU in a few minutes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner::device::{run_on, BackendJob, DeviceKind};
use captioner_training::run_dir::RunDir;
use captioner_training::train::{train, TrainReport};
use captioner_training::TrainConfig;
use clap::Parser;

/// Train an image captioner (CNN encoder + attention LSTM decoder, "Show, Attend and Tell").
///
/// With no argument: trains on the embedded synthetic "shapes" dataset (no download) on the
/// CPU, shows Burn's training dashboard (plain progress lines when stdout is not a terminal),
/// checkpoints every epoch and ends with a held-out report. Caption pictures with the result:
/// `infer --model <run folder> picture.png`.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Passes over the training captions [default: 8].
    #[arg(long)]
    epochs: Option<usize>,
    /// Captions per optimiser step [default: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate at the start; it decays along a cosine to a twentieth of it by the
    /// last epoch [default: 0.002].
    #[arg(long)]
    lr: Option<f64>,
    /// Seed of weight initialisation and data shuffling [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Backend to train on; GPU backends need the matching cargo feature
    /// (`--features wgpu` or `--features cuda`).
    #[arg(long, value_enum, default_value_t = DeviceKind::Ndarray)]
    device: DeviceKind,
    /// Run folder for checkpoints, vocabulary, final model and report
    /// [default: a new folder artifacts/shapes-<date>-<time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in --out (or the newest run under artifacts/) from its last
    /// checkpoint, with its saved settings; --epochs sets the new total.
    #[arg(long)]
    resume: bool,
    /// Data-loading threads [default: 2].
    #[arg(long)]
    workers: Option<usize>,
    /// Element-wise gradient clipping threshold [default: 5].
    #[arg(long)]
    grad_clip: Option<f32>,
    /// Number of training scenes of the shapes dataset (5 captions each) [default: 2000].
    #[arg(long)]
    train_images: Option<usize>,
    /// Number of validation scenes, scored after every epoch [default: 200].
    #[arg(long)]
    valid_images: Option<usize>,
    /// Number of held-out test scenes in the final report [default: 500].
    #[arg(long)]
    test_images: Option<usize>,
    /// Beam size of the final evaluation (1 = greedy) [default: 3].
    #[arg(long)]
    beam_size: Option<usize>,
}

impl Args {
    /// Applies the flags that were given on top of `config`.
    fn apply(&self, mut config: TrainConfig) -> TrainConfig {
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),*) => {
                $(if let Some(v) = self.$flag { config.$($field).+ = v; })*
            };
        }
        set!(epochs => epochs, batch_size => batch_size, lr => lr, seed => seed,
             workers => workers, grad_clip => grad_clip, train_images => shapes.train,
             valid_images => shapes.valid, test_images => shapes.test, beam_size => beam_size);
        config
    }
}

struct TrainJob {
    config: TrainConfig,
    run: RunDir,
    resume_from: Option<usize>,
}

impl BackendJob for TrainJob {
    type Output = TrainReport;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<TrainReport> {
        train::<B>(device, self.config, &self.run, self.resume_from)
    }
}

/// The newest run folder under `artifacts/` that holds a training config.
fn newest_run(parent: &Path) -> Option<PathBuf> {
    std::fs::read_dir(parent)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").exists())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let artifacts = Path::new("artifacts");
    let (run, config, resume_from) = if args.resume {
        let Some(root) = args.out.clone().or_else(|| newest_run(artifacts)) else {
            bail!("--resume needs a run to continue: pass --out <run folder>");
        };
        let run = RunDir::new(root);
        let saved = run.load_train_config()?;
        let Some(epoch) = run.last_checkpoint() else {
            bail!(
                "{} has no checkpoint to resume from; start a new run without --resume",
                run.checkpoints().display()
            );
        };
        let config = args.apply(saved);
        if epoch >= config.epochs {
            bail!(
                "{} has already trained {epoch} epochs: pass --epochs N with N > {epoch} to train more",
                run.root().display()
            );
        }
        println!("Resuming {} from epoch {epoch}", run.root().display());
        (run, config, Some(epoch))
    } else {
        let run = match &args.out {
            Some(dir) => RunDir::new(dir),
            None => RunDir::timestamped(artifacts, "shapes"),
        };
        if run.train_config().exists() {
            bail!(
                "{} already holds a run: pass --resume to continue it, or another --out",
                run.root().display()
            );
        }
        (run, args.apply(TrainConfig::default()), None)
    };
    println!(
        "Training on {:?}; run folder {}",
        args.device,
        run.root().display()
    );
    let report = run_on(
        args.device,
        TrainJob {
            config,
            run,
            resume_from,
        },
    )?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &TrainReport) {
    let t = &report.test;
    let minutes = (report.wall_seconds / 60.0).floor();
    println!();
    println!(
        "Done in {}m {:02}s ({} epochs). Run folder: {}",
        minutes,
        (report.wall_seconds - minutes * 60.0).round(),
        report.epochs,
        report.run
    );
    println!(
        "Held-out test scenes: {} (beam size {})",
        t.images, report.config.beam_size
    );
    println!(
        "  captions naming every object's colour and shape: {:.1}%",
        100.0 * t.objects_accuracy
    );
    println!(
        "  sizes right: {:.1}%   relations right: {:.1}%   all right: {:.1}%",
        100.0 * t.sizes_accuracy,
        100.0 * t.relations_accuracy,
        100.0 * t.all_correct
    );
    println!(
        "  BLEU-1..4: {:.3} {:.3} {:.3} {:.3}",
        t.bleu[0], t.bleu[1], t.bleu[2], t.bleu[3]
    );
    for (generated, reference) in &t.examples {
        println!("  \"{generated}\"   (reference: \"{reference}\")");
    }
    println!("Report: {}/report.json", report.run);
    println!(
        "Caption your own pictures: cargo run --release --bin infer -- --model {} picture.png",
        report.run
    );
}

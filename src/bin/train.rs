//! `train`: trains a captioner and reports how well it captions held-out images.
//!
//! With no argument it trains on the embedded "shapes" dataset on the CPU in a few minutes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use burn::train::Interrupter;
use captioner::device::{choose, DeviceKind, DeviceList, ShapesFlag};
use captioner::jobs::train::TrainJob;
use captioner::settings::TrainFlags;
use captioner_training::run_dir::{ResumePoint, RunDir};
use captioner_training::train::{Stopped, TrainReport};
use clap::Parser;

/// Train an image captioner (CNN encoder + attention LSTM decoder, "Show, Attend and Tell").
///
/// With no argument: trains on the embedded synthetic "shapes" dataset (no download) on the
/// CPU, shows Burn's training dashboard (plain progress lines when stdout is not a terminal),
/// checkpoints every epoch and ends with a held-out report. Caption pictures with the result:
/// `infer --model <run folder> picture.png`.
///
/// On real data: `train --dataset flickr8k --data-dir DIR` reads the dataset (format detected
/// from the files), lists what it will skip, decodes the pictures on every core and trains; the
/// report gives the dev split's BLEU.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    #[command(flatten)]
    settings: TrainFlags,
    /// Backend to train on. auto takes the first of cuda, wgpu, flex, ndarray that is built
    /// in and starts (wgpu only on a hardware GPU); the first line printed says which and
    /// why. GPU backends need their cargo feature (`--features cuda` or `--features wgpu`).
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
    /// Train data-parallel on several devices of the backend: a count (`2`), indices (`0,1`)
    /// or devices (`cuda:0,cuda:1`). Each device takes its own batches of --batch-size
    /// captions from its share of the data and their gradients are summed into one update per
    /// round (burn-train's multi-device strategy); validation runs on the first [default: 1].
    #[arg(long, value_name = "LIST")]
    devices: Option<DeviceList>,
    /// How a step's tensors are shaped: auto (fixed on the GPU backends, packed on the CPU
    /// ones), packed (the decoder steps only the captions still running: the least work, but
    /// every new shape compiles and tunes GPU kernels) or fixed (batches, caption widths and
    /// decoder steps padded to a few sizes, the padding masked out of the loss).
    #[arg(long, value_enum, default_value_t = ShapesFlag::Auto)]
    shapes: ShapesFlag,
    /// Run folder for checkpoints, vocabulary, final model and report
    /// [default: a new folder artifacts/<dataset>-<date>-<time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in --out (or the newest run under artifacts/) from its last
    /// checkpoint, with its saved settings; --epochs sets the new total.
    #[arg(long)]
    resume: bool,
    /// Print the settings this command would train with, as the JSON of the run's
    /// config.json (a new run: the dataset's defaults, then --preset's, then the flags
    /// given; with --resume: the run's saved settings and the flags given), and exit without
    /// training or writing anything.
    #[arg(long)]
    print_config: bool,
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

fn main() -> ExitCode {
    captioner::keep_freed_memory();
    captioner::stdout_failures_are_messages();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<Stopped>() {
            Some(stopped) => {
                eprintln!("{stopped}");
                ExitCode::from(130)
            }
            None => captioner::report_error(&error, 1),
        },
    }
}

fn run(args: Args) -> Result<()> {
    let kind = match args.devices.as_ref().and_then(|d| d.kind) {
        Some(listed) if args.device != DeviceKind::Auto && args.device != listed => bail!(
            "--device {} and --devices {listed}:.. name two backends: give one",
            args.device
        ),
        Some(listed) => listed,
        None => args.device,
    };
    let artifacts = Path::new("artifacts");
    // The run folder and its settings, resolved once: printed, or trained with.
    let (run, config) = if args.resume {
        let run = match args.out.clone().or_else(|| newest_run(artifacts)) {
            Some(root) => RunDir::new(root),
            None => bail!("--resume needs a run to continue: pass --out <run folder>"),
        };
        let config = args
            .settings
            .resumed_config(run.load_train_config()?, run.root())?;
        (run, config)
    } else if let Some(from) = &args.settings.init_from {
        let first = RunDir::new(from);
        let weights = first.weights().with_extension("mpk");
        if !weights.exists() {
            bail!(
                "{} holds no final model ({} is missing): --init-from takes a finished run",
                from.display(),
                weights.display()
            );
        }
        let config = args
            .settings
            .stage_config(first.load_train_config()?, from)?;
        let run = match &args.out {
            Some(dir) => RunDir::new(dir),
            None => {
                let stage = if args.settings.scst { "scst" } else { "stage" };
                let prefix = format!("{}-{stage}", config.data.name().name());
                RunDir::timestamped(artifacts, &prefix)
            }
        };
        (run, config)
    } else {
        let run = match &args.out {
            Some(dir) => RunDir::new(dir),
            None => RunDir::timestamped(artifacts, args.settings.dataset.name()),
        };
        (run, args.settings.new_config()?)
    };
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    config
        .check()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let resume_from = if args.resume {
        let (point, broken) = run.resume_point();
        for problem in &broken {
            eprintln!("warning: {problem}");
        }
        // A step past the epochs now asked for is not trained: the run ends at its epoch.
        let point = point.map(|p| match p.step {
            Some(step) if step.epoch > config.epochs => ResumePoint { step: None, ..p },
            _ => p,
        });
        match point {
            Some(ResumePoint {
                epochs, step: None, ..
            }) if epochs >= config.epochs && run.report().exists() => bail!(
                "{} has already trained {epochs} epochs: pass --epochs N with N > {epochs} to train more",
                run.root().display()
            ),
            Some(
                p @ ResumePoint {
                    epochs, step: None, ..
                },
            ) if epochs >= config.epochs => {
                println!(
                    "{} has trained its {epochs} epochs but stopped before its report: \
                     finishing it",
                    run.root().display()
                );
                Some(p)
            }
            Some(p) => Some(p),
            None => {
                println!(
                    "{} has no complete checkpoint yet (the run stopped in its first epoch): \
                     starting it from the beginning with its settings",
                    run.root().display()
                );
                None
            }
        }
    } else {
        if run.never_checkpointed() {
            println!(
                "{} holds a run that stopped before its first checkpoint: starting it over",
                run.root().display()
            );
        } else if run.train_config().exists() {
            bail!(
                "{} already holds a run: pass --resume to continue it, or another --out",
                run.root().display()
            );
        }
        None
    };
    let chosen = choose(kind)?;
    eprintln!("{chosen}");
    match resume_from {
        Some(ResumePoint {
            step: Some(step), ..
        }) => println!(
            "Resuming {} from step {} of {} in epoch {}",
            run.root().display(),
            step.steps,
            step.steps_per_epoch,
            step.epoch
        ),
        Some(ResumePoint { epochs, .. }) => {
            println!("Resuming {} from epoch {epochs}", run.root().display())
        }
        None => {}
    }
    println!("Run folder {}", run.root().display());
    let indices = args.devices.map(|d| d.indices).unwrap_or_default();
    let interrupter = Interrupter::new();
    captioner::stop_on_ctrl_c(interrupter.clone());
    let report = captioner::jobs::train::run(
        &chosen,
        &indices,
        args.shapes.shapes(),
        TrainJob {
            config,
            run,
            resume_from,
            interrupter,
        },
    )?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &TrainReport) {
    // Rounded once, so that 59.6 s past a minute reads as the next minute, not "60s".
    let seconds = report.wall_seconds.round() as u64;
    println!();
    let epochs = match report.resumed_after {
        Some(done) if done + 1 == report.epochs => {
            format!("epoch {}, resumed after epoch {done}", report.epochs)
        }
        Some(done) if done < report.epochs => {
            format!(
                "epochs {} to {}, resumed after epoch {done}",
                done + 1,
                report.epochs
            )
        }
        Some(done) => format!("{done} epochs, all trained before"),
        None => format!("{} epochs", report.epochs),
    };
    println!(
        "Done in {}m {:02}s ({epochs}). Run folder: {}",
        seconds / 60,
        seconds % 60,
        report.run
    );
    print!("{}", report.eval);
    if let Some(test) = &report.test {
        print!("{test}");
    }
    println!("Report: {}/report.json", report.run);
    println!(
        "Caption your own pictures: cargo run --release --bin infer -- --model {} picture.png",
        report.run
    );
}

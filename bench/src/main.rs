//! `bench --row ROW`: times one row of the captioner benchmark on the backend `--device`
//! picks, and prints one line of JSON (the same fields as `bench/pytorch_reference.py`).
//! `bench/run.sh` runs every row on both sides and prints the comparison table.

mod rows;

use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use captioner::device::{choose, run_on, BackendJob, DeviceKind, ShapesFlag, Target};
use clap::Parser;

use rows::Row;

/// Times one benchmark row (random data, no download) and prints its throughput as JSON.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Which row to run: gemm a plain [2048,2048] square product (the machine's peak, in
    /// GFLOP/s), 1a/1b decoder training step (Show-Attend-Tell size / Flickr8k
    /// preset size), 2-resnet101/2-lite0 encoder forward, 3 fine-tuning step of ResNet-101
    /// layers 2-4 and the decoder, 4-b32/4-b1 beam search (K=3) at batch 32 / batch 1.
    #[arg(long, value_enum)]
    row: Row,
    /// Backend to run on (each must be compiled in with its cargo feature); auto takes the
    /// first of cuda, wgpu, flex, ndarray that starts.
    #[arg(long, value_enum, default_value = "flex")]
    device: DeviceKind,
    /// How the training rows shape their steps: auto (the backend's way), packed or fixed
    /// (see `train --help`).
    #[arg(long, value_enum, default_value_t = ShapesFlag::Auto)]
    shapes: ShapesFlag,
    /// A short measurement: one warm-up step, then few timed runs.
    #[arg(long)]
    quick: bool,
    /// Untimed steps before the first timed run (default: 2, quick: 1; row 3: 1, quick: 0).
    #[arg(long)]
    warmup: Option<usize>,
    /// Timed runs; the median is reported (default: 5, quick: 3; row 3: 3, quick: 1).
    #[arg(long)]
    runs: Option<usize>,
    /// Steps per timed run (default: 3, quick: 1; row 4-b1: 10, quick: 3; row 3: 1).
    #[arg(long)]
    iters: Option<usize>,
}

/// How many steps to run and time.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    warmup: usize,
    runs: usize,
    iters: usize,
}

impl Args {
    fn plan(&self) -> Plan {
        let (warmup, runs, iters) = match (self.row, self.quick) {
            (Row::FineTune, false) => (1, 3, 1),
            (Row::FineTune, true) => (0, 1, 1),
            (Row::BeamBatch1, false) => (2, 5, 10),
            (Row::BeamBatch1, true) => (1, 3, 3),
            (_, false) => (2, 5, 3),
            (_, true) => (1, 3, 1),
        };
        Plan {
            warmup: self.warmup.unwrap_or(warmup),
            runs: self.runs.unwrap_or(runs).max(1),
            iters: self.iters.unwrap_or(iters).max(1),
        }
    }
}

/// A row ready to run: `step` does one unit of work on `items` items.
pub struct Workload<'a> {
    /// What one step processes (captions or images; GFLOP for row gemm).
    pub items: f64,
    /// One step, synchronised with the device before it returns.
    pub step: Box<dyn FnMut() + 'a>,
}

/// The per-run throughputs (or latencies) of a row.
struct Measured {
    runs: Vec<f64>,
}

struct RowJob {
    row: Row,
    plan: Plan,
}

impl BackendJob for RowJob {
    type Output = Measured;

    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Measured> {
        let device = target.device;
        let mut workload = rows::build::<B>(self.row, target.shapes, &device);
        for _ in 0..self.plan.warmup {
            (workload.step)();
        }
        let mut runs = Vec::with_capacity(self.plan.runs);
        for _ in 0..self.plan.runs {
            let start = Instant::now();
            for _ in 0..self.plan.iters {
                (workload.step)();
            }
            let seconds = start.elapsed().as_secs_f64();
            let items = workload.items * self.plan.iters as f64;
            runs.push(if self.row.is_latency() {
                seconds * 1000.0 / items
            } else {
                items / seconds
            });
        }
        Ok(Measured { runs })
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Peak resident memory of this process in MiB (Linux's `VmHWM`), if the system says.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<()> {
    captioner::keep_freed_memory();
    let args = Args::parse();
    let plan = args.plan();
    let chosen = choose(args.device)?;
    eprintln!("{chosen}");
    let shapes = args.shapes.shapes().unwrap_or(chosen.kind.shapes());
    let measured = run_on(
        &chosen,
        &[],
        Some(shapes),
        RowJob {
            row: args.row,
            plan,
        },
    )?;
    let device = chosen.kind.name();
    let line = serde_json::json!({
        "side": "burn",
        "row": args.row.name(),
        "unit": args.row.unit(),
        "median": median(&measured.runs),
        "runs": measured.runs,
        // The CPU's resident set; on a GPU, device memory is not counted here.
        "peak_mem_mb": peak_rss_mb(),
        "device": device,
        "shapes": format!("{shapes:?}").to_lowercase(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{line}");
    Ok(())
}

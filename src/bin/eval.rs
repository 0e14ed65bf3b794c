//! `eval`: scores a trained run on held-out images of its dataset.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use captioner::device::{run_on, BackendJob, DeviceKind};
use captioner_model::SearchConfig;
use captioner_training::config::DataSource;
use captioner_training::evaluate::{evaluate, EvalReport, HeldOut};
use captioner_training::RunDir;
use clap::Parser;

/// Score a model trained by `train` on held-out images of the dataset it was trained on.
///
/// Prints the scores and writes them as JSON with --json.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run folder written by `train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Beams kept while decoding; 1 is greedy decoding. Several values (`--beam-size 1,3,5`)
    /// score each in turn.
    #[arg(long, default_value = "3", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    beam_size: Vec<u16>,
    /// Longest caption, in words; longer ones are cut.
    #[arg(long, default_value_t = 20)]
    max_len: usize,
    /// Print one JSON object per beam size instead of text.
    #[arg(long)]
    json: bool,
    /// Backend to run on; GPU backends need the matching cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Ndarray)]
    device: DeviceKind,
}

struct EvalJob {
    args: Args,
}

impl BackendJob for EvalJob {
    type Output = Vec<EvalReport>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output> {
        let run = RunDir::new(&self.args.model).load::<B::InnerBackend>(&device)?;
        let DataSource::Shapes(shapes) = &run.train_config.data else {
            anyhow::bail!(
                "eval of runs on datasets from disk is not there yet: the report.json of the run \
                 holds the dev-split scores of its training"
            );
        };
        let held_out = HeldOut::shapes(shapes, captioner_datasets::Split::Test);
        Ok(self
            .args
            .beam_size
            .iter()
            .map(|&beam| {
                let search = SearchConfig {
                    beam_size: beam as usize,
                    max_len: self.args.max_len,
                };
                evaluate(
                    &run.model,
                    &run.vocab,
                    &held_out,
                    shapes.image_size,
                    &search,
                    &device,
                )
            })
            .collect())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let json = args.json;
    let device = args.device;
    for report in run_on(device, EvalJob { args })? {
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{report}");
        }
    }
    Ok(())
}

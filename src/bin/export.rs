//! `export`: a trained run in the format models are shared in.

use std::path::PathBuf;
use std::process::ExitCode;

use captioner::device::DeviceKind;
use captioner::jobs::export::{file_size, ExportJob};
use captioner_model::export::Precision;
use clap::Parser;

/// Write a run trained by `train` as a folder to share: `model.safetensors` (tensors named as
/// a PyTorch user reads them, metadata with the encoder, the input size, the normalisation and
/// the vocabulary's hash), `config.json`, `vocab.json` and a model card, `README.md`, with the
/// run's scores. `infer` and `serve` take the folder as `--model`.
///
///   export --model artifacts/scst --out my-captioner --half
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Args {
    /// Run folder written by `train` (holds model.mpk, model.json, vocab.json, report.json).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Folder to write (created if needed; its files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Store the weights in half precision (f16): half the size; they are read back as f32 on
    /// every backend.
    #[arg(long)]
    half: bool,
    /// Backend to load the run on: auto takes the first of cuda, wgpu, flex, ndarray that is
    /// built in and starts (said on stderr).
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let job = ExportJob {
        model: args.model,
        out: args.out,
        precision: match args.half {
            true => Precision::F16,
            false => Precision::F32,
        },
    };
    match captioner::jobs::export::run(args.device, job) {
        Ok(exported) => {
            for (path, bytes) in exported.files {
                println!("{}  {}", path.display(), file_size(bytes));
            }
            ExitCode::SUCCESS
        }
        Err(e) => captioner::report_error(&e, 2),
    }
}

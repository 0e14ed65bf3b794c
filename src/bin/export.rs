//! `export`: a trained run in the format models are shared in.

use std::path::PathBuf;
use std::process::ExitCode;

use captioner::device::DeviceKind;
use captioner::jobs::export::{file_size, ExportJob};
use captioner::named::Named;
use captioner_model::export::Precision;
use clap::Parser;

/// Write a run trained by `train` as a folder to share: `model.safetensors` (tensors named as
/// a PyTorch user reads them, metadata with the encoder, the input size, the normalisation and
/// the vocabulary's hash), `config.json`, `vocab.json` and a model card, `README.md`, with the
/// run's scores. `infer` and `serve` take the folder as `--model`.
///
///   export --model artifacts/scst --out my-captioner --precision f16-decoder
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Args {
    /// Run folder written by `train` (holds model.mpk, model.json, vocab.json, report.json).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Folder to write (created if needed; its files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How the weights are stored: f32 as trained; f16, half the size (the encoder's rounding
    /// grows through its layers, so some captions change); f16-decoder, the decoder in f16 and
    /// the encoder in f32 (the decoder's share halved). Every kind is read back as f32 on every
    /// backend.
    #[arg(long, value_name = "KIND", default_value = "f32", value_parser = Named::new(Precision::NAMES))]
    precision: Precision,
    /// Scores for the model card in place of the run's own report: the JSON lines of `eval
    /// model --json` (one a beam size), e.g. `eval model --model DIR --data-dir DATA --split
    /// dev --beam-size 1,3 --json` run on the exported folder itself.
    #[arg(long, value_name = "FILE")]
    scores: Option<PathBuf>,
    /// Markdown added at the end of the model card: what the model gets wrong, the terms of
    /// its data. A YAML block at the file's top (between `---` lines, e.g. `license: ...`)
    /// goes into the card's header.
    #[arg(long, value_name = "FILE")]
    notes: Option<PathBuf>,
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
        precision: args.precision,
        scores: args.scores,
        notes: args.notes,
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

//! `infer`: captions pictures with a trained run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use captioner::decoding::Decoding;
use captioner::device::DeviceKind;
use captioner::jobs::infer::InferJob;
use captioner::pictures::{collect, Collected, Picture};
use captioner::shipped::choose_models;
use clap::Parser;

/// Caption pictures with a model trained by `train`.
///
/// Takes picture files, folders (walked recursively for .jpg, .jpeg and .png files, in path
/// order) and `-` (one path a line on stdin). Prints one line per picture, `path<TAB>caption`,
/// or JSON lines with --json; --out writes a caption file per picture instead. A picture that
/// cannot be read is reported on stderr and the others are still captioned; the exit status
/// is then 1 (2 when the model cannot be loaded or an output cannot be written).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run folder written by `train` (model.mpk, model.json, vocab.json) or folder written by
    /// `export` [default: $CAPTIONER_MODEL, else the shipped Flickr8k captioner in
    /// artifacts/pretrained/flickr8k-lite2]. Given more than once, the models caption together (an ensemble: at every
    /// step the next word's probability is the mean of theirs); they must share one vocabulary,
    /// as runs on the same training captions do, and may differ in encoder.
    #[arg(long, value_name = "DIR")]
    model: Vec<PathBuf>,
    /// Pictures to caption: files (JPEG, PNG, WebP, BMP, TIFF or GIF, any size: prepared as
    /// the run's training pictures were), folders (recursively, the files named as pictures;
    /// names starting with a dot are skipped, the other files are counted in one line), or `-`
    /// to read paths from stdin, one a line.
    #[arg(value_name = "PICTURE|DIR|-", required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    decoding: Decoding,
    /// Print JSON lines: {"image", "caption", "tokens", "score", "finished", "alternatives"}
    /// (score: the caption's total log-probability; finished: false when cut at --max-len;
    /// alternatives: the beam's other captions with their scores).
    #[arg(long)]
    json: bool,
    /// Write each caption to DIR/<name>.txt instead of printing it: the picture's name with
    /// .txt for its extension, under the same subfolders as in a folder given (the layout
    /// that tools preparing image datasets read). Prints nothing per picture unless --json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write for each picture DIR/<name>.png: the picture once per word of its caption,
    /// lit where the model looked when it wrote that word (Figure 3 of Show, Attend and Tell).
    #[arg(long, value_name = "DIR")]
    attention_dir: Option<PathBuf>,
    /// Write one self-contained HTML page (pictures inlined) with each picture's caption,
    /// the beam's other captions and their scores, and its attention grid.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Pictures read and captioned together.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    batch_size: u16,
    /// Backend to run on: auto takes the first of cuda, wgpu, flex, ndarray that is built in
    /// and starts (said on stderr). GPU backends need their cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

/// Pictures whose output files would have the same name: each pair as a message.
fn clashing_outputs(pictures: &[Picture]) -> Vec<String> {
    let mut first: HashMap<PathBuf, &Path> = HashMap::new();
    let mut clashes = Vec::new();
    for picture in pictures {
        let stem = picture.relative.with_extension("");
        if let Some(other) = first.insert(stem.clone(), &picture.path) {
            clashes.push(format!(
                "{} and {} would both write {}.*: caption them in separate runs",
                other.display(),
                picture.path.display(),
                stem.display()
            ));
        }
    }
    clashes
}

fn main() -> ExitCode {
    captioner::keep_freed_memory();
    let args = Args::parse();
    let Collected {
        pictures,
        problems,
        passed_over,
    } = collect(&args.inputs, &mut std::io::stdin().lock());
    for problem in &problems {
        eprintln!("error: {problem} (skipped)");
    }
    for files in &passed_over {
        eprintln!("note: {files}");
    }
    if args.out.is_some() || args.attention_dir.is_some() {
        let clashes = clashing_outputs(&pictures);
        if !clashes.is_empty() {
            for clash in clashes {
                eprintln!("error: {clash}");
            }
            return ExitCode::from(2);
        }
    }
    if pictures.is_empty() {
        eprintln!("error: no pictures to caption");
        return ExitCode::from(1);
    }
    let models = match choose_models(args.model) {
        Ok(models) => models,
        Err(e) => return captioner::report_error(&e, 2),
    };
    let job = InferJob {
        search: args.decoding.search(),
        block_repeats: args.decoding.block_repeats,
        block_cut_endings: args.decoding.block_cut_endings,
        models,
        inputs: args.inputs,
        pictures,
        json: args.json,
        out: args.out,
        attention_dir: args.attention_dir,
        html: args.html,
        batch_size: args.batch_size.into(),
    };
    let summary = match captioner::jobs::infer::run(args.device, job) {
        Ok(summary) => summary,
        Err(e) => return captioner::report_error(&e, 2),
    };
    if summary.stdout_closed {
        return ExitCode::SUCCESS;
    }
    let failed = summary.unreadable + problems.len();
    if failed > 0 {
        eprintln!(
            "{failed} input{} could not be captioned ({} captioned)",
            if failed == 1 { "" } else { "s" },
            summary.captioned
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

//! `infer`: captions pictures with a trained run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use captioner::device::{run_chosen, BackendJob, DeviceKind, Target};
use captioner_datasets::image::{load_rgb, RgbImage};
use captioner_model::{Batching, Captioning, ModelFiles, SearchConfig};
use clap::Parser;

/// Caption pictures with a model trained by `train`.
///
/// Prints one line per picture, `path<TAB>caption`, in the order given (or JSON lines with
/// --json). A picture that cannot be read (missing, not an image) is reported on stderr and
/// skipped; the others are still captioned, and the exit status is then 1.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run folder written by `train` (holds model.mpk, model.json, vocab.json).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Pictures to caption (JPEG or PNG, any size: resized to the model's input).
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
    /// Beams kept while decoding; 1 is greedy decoding.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    beam_size: u16,
    /// Longest caption, in words; longer ones are cut.
    #[arg(long, default_value_t = 20)]
    max_len: usize,
    /// Print JSON lines: {"image", "caption", "tokens", "score"} (score: the caption's total
    /// log-probability).
    #[arg(long)]
    json: bool,
    /// Pictures decoded together.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Backend to run on: auto takes the first of cuda, wgpu, flex, ndarray that is built in
    /// and starts (said on stderr). GPU backends need their cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

struct InferJob {
    args: Args,
    pictures: Vec<(PathBuf, RgbImage)>,
}

impl BackendJob for InferJob {
    type Output = ();
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<()> {
        let device = target.device;
        let run = Captioning::<B::InnerBackend>::load(&ModelFiles::new(&self.args.model), &device)?;
        let search = SearchConfig {
            beam_size: self.args.beam_size as usize,
            max_len: self.args.max_len,
        };
        let batching = Batching {
            batch_size: self.args.batch_size,
            shapes: target.shapes,
        };
        // Prepared as the run's training pictures were (centre crop or squashed).
        let pictures: Vec<&RgbImage> = self.pictures.iter().map(|(_, p)| p).collect();
        let many = pictures.len() > self.args.batch_size;
        let captions = run.caption_pictures(&pictures, &search, batching, many);
        for ((path, _), caption) in self.pictures.iter().zip(captions) {
            let text = run.vocab.decode(&caption.tokens);
            if self.args.json {
                let words: Vec<&str> = caption.tokens.iter().map(|&t| run.vocab.word(t)).collect();
                let line = serde_json::json!({
                    "image": path.display().to_string(),
                    "caption": text,
                    "tokens": words,
                    "score": caption.score,
                });
                println!("{line}");
            } else {
                println!("{}\t{text}", path.display());
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    captioner::keep_freed_memory();
    let args = Args::parse();
    let mut pictures = Vec::new();
    let mut failed = 0;
    for path in &args.images {
        match load_rgb(path) {
            Ok(image) => pictures.push((path.clone(), image)),
            Err(e) => {
                eprintln!("error: {e} (skipped)");
                failed += 1;
            }
        }
    }
    let device = args.device;
    if !pictures.is_empty() {
        if let Err(e) = run_chosen(device, InferJob { args, pictures }) {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    if failed > 0 {
        eprintln!("{failed} picture(s) could not be read");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

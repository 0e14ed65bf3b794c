//! Writing a trained run in the format models are shared in (the job of `export`):
//! `model.safetensors` ([`captioner_model::export`]), `vocab.json`, `config.json` (the model's
//! shape and picture preparation) and a model card, `README.md`, with the run's own scores.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::image::{IMAGENET_MEAN, IMAGENET_STD};
use captioner_model::export::{to_safetensors, vocab_hash, Precision};
use captioner_training::train::TrainReport;
use captioner_training::{LoadedRun, RunDir};

use crate::device::{run_chosen, BackendJob, DeviceKind, Target};
use crate::write_file;

/// A run to export.
pub struct ExportJob {
    /// The run folder written by `train`.
    pub model: PathBuf,
    /// The folder to write (created if needed).
    pub out: PathBuf,
    /// How the weights are stored.
    pub precision: Precision,
}

/// What `export` wrote.
#[derive(Debug)]
pub struct Exported {
    /// The files, with their sizes in bytes.
    pub files: Vec<(PathBuf, u64)>,
}

impl BackendJob for ExportJob {
    type Output = Exported;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Exported> {
        let dir = RunDir::new(&self.model);
        let run = dir.load::<B::InnerBackend>(&target.device)?;
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        let captioning = &run.captioning;
        let bytes = to_safetensors(
            &captioning.model,
            self.precision,
            &metadata(&run, self.precision),
        )
        .map_err(|why| anyhow::anyhow!("cannot export {}: {why}", self.model.display()))?;
        let report: Option<TrainReport> = std::fs::read(dir.report())
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok());
        let name = self
            .out
            .file_name()
            .map_or("captioner".into(), |n| n.to_string_lossy().into_owned());
        let files = [
            ("model.safetensors", bytes),
            (
                "config.json",
                serde_json::to_string_pretty(&captioning.config)?.into_bytes(),
            ),
            (
                "vocab.json",
                std::fs::read(dir.vocab())
                    .with_context(|| format!("cannot read {}", dir.vocab().display()))?,
            ),
            (
                "README.md",
                model_card(&name, &run, report.as_ref(), self.precision).into_bytes(),
            ),
        ];
        let mut written = Vec::new();
        for (file, bytes) in files {
            let path = self.out.join(file);
            write_file(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push((path, bytes.len() as u64));
        }
        Ok(Exported { files: written })
    }
}

/// The metadata of an exported model: what it takes and which vocabulary it was trained with.
fn metadata<B: burn::prelude::Backend>(
    run: &LoadedRun<B>,
    precision: Precision,
) -> HashMap<String, String> {
    let input = run.captioning.input;
    HashMap::from([
        ("format".into(), "pt".into()),
        ("model".into(), "captioner (Show, Attend and Tell)".into()),
        ("encoder".into(), run.train_config.encoder.name.to_string()),
        ("input_size".into(), input.size.to_string()),
        (
            "resize".into(),
            match input.center_crop {
                true => "crop: the shorter side to 256/224 of the input, the centre square",
                false => "squash: the whole picture to the input square",
            }
            .into(),
        ),
        (
            "normalisation".into(),
            format!("RGB on 0..1, minus mean {IMAGENET_MEAN:?}, divided by std {IMAGENET_STD:?}"),
        ),
        ("vocab_sha256".into(), vocab_hash(&run.captioning.vocab)),
        (
            "dtype".into(),
            match precision {
                Precision::F32 => "float32",
                Precision::F16 => "float16",
            }
            .into(),
        ),
    ])
}

/// A model card in the form the Hugging Face Hub reads: a YAML header with the run's scores
/// (`model-index`), then what the model is, how to use it and how it was trained.
fn model_card<B: burn::prelude::Backend>(
    name: &str,
    run: &LoadedRun<B>,
    report: Option<&TrainReport>,
    precision: Precision,
) -> String {
    let config = &run.train_config;
    let dataset = config.data.name();
    let input = run.captioning.input;
    let mut card = String::new();
    let _ = writeln!(card, "---");
    let _ = writeln!(card, "pipeline_tag: image-to-text");
    let _ = writeln!(card, "library_name: captioner");
    let _ = writeln!(card, "tags:\n- image-captioning\n- show-attend-and-tell");
    let _ = writeln!(card, "datasets:\n- {dataset}");
    let _ = writeln!(card, "metrics:\n- bleu\n- rouge\n- cider");
    let scored: Vec<_> = report
        .into_iter()
        .flat_map(|r| std::iter::once(&r.eval).chain(r.test.as_ref()))
        .collect();
    if !scored.is_empty() {
        let _ = writeln!(card, "model-index:\n- name: {name}\n  results:");
        for eval in &scored {
            let beam = eval.beam_size;
            let s = &eval.scores;
            let _ = writeln!(
                card,
                "  - task:\n      type: image-to-text\n      name: Image captioning\n    \
                 dataset:\n      type: {dataset}\n      name: {dataset}\n      split: {}\n    \
                 metrics:",
                eval.split
            );
            for (kind, label, value) in [
                ("bleu", "BLEU-1", s.bleu[0]),
                ("bleu", "BLEU-4", s.bleu[3]),
                ("rouge", "ROUGE-L", s.rouge_l),
                ("cider", "CIDEr-D", s.cider),
            ] {
                let _ = writeln!(
                    card,
                    "    - type: {kind}\n      name: {label} (beam {beam})\n      value: {value:.4}"
                );
            }
        }
    }
    let _ = writeln!(card, "---\n\n# {name}\n");
    let _ = writeln!(
        card,
        "An image captioner in the manner of Show, Attend and Tell (Xu et al. 2015): the \
         {} encoder gives a grid of features of a {size}x{size} picture ({}), and an LSTM \
         with soft attention over the grid writes the caption, found by beam search. Trained \
         with captioner's `train` on {dataset}.\n",
        config.encoder.name,
        if input.center_crop {
            "the centre square"
        } else {
            "the whole picture, squashed"
        },
        size = input.size,
    );
    let _ = writeln!(
        card,
        "## Use\n\n```sh\ncargo run --release --bin infer -- --model {name} photo.jpg\n```\n"
    );
    let _ = writeln!(
        card,
        "## Files\n\n- `model.safetensors`: the weights in {}, named as a PyTorch user reads \
         them (linear weights `[out, in]`); its metadata says the encoder, the input size, \
         how a picture is prepared and normalised, and the vocabulary's SHA-256.\n- \
         `config.json`: the model's shape and picture preparation.\n- `vocab.json`: the \
         words, by id.\n",
        match precision {
            Precision::F32 => "f32",
            Precision::F16 => "f16 (read back as f32)",
        }
    );
    if let Some(report) = report {
        let _ = writeln!(
            card,
            "## Training and scores\n\n{} epochs (best: {}), batch {}, seed {}; {} training \
             images.\n",
            report.epochs,
            report
                .best
                .as_ref()
                .map_or("-".to_string(), |b| b.epoch.to_string()),
            config.batch_size,
            config.seed,
            report
                .data
                .splits
                .get(&captioner_datasets::Split::Train)
                .map_or(0, |(images, _)| *images),
        );
        let _ = writeln!(
            card,
            "| split | beam | BLEU-1 | BLEU-4 | ROUGE-L | CIDEr-D |\n|---|---:|---:|---:|---:|---:|"
        );
        for eval in &scored {
            let s = &eval.scores;
            let _ = writeln!(
                card,
                "| {}{} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                eval.split,
                if eval.picked_best_epoch {
                    " (picked the best epoch)"
                } else {
                    ""
                },
                eval.beam_size,
                s.bleu[0],
                s.bleu[3],
                s.rouge_l,
                s.cider
            );
        }
    }
    card
}

/// Exports `job.model` on `device`.
pub fn run(device: DeviceKind, job: ExportJob) -> Result<Exported> {
    run_chosen(device, job)
}

/// The size of a file for messages: "27.3 MB", "12.4 kB", "310 bytes".
pub fn file_size(bytes: u64) -> String {
    match bytes {
        0..1000 => format!("{bytes} bytes"),
        1000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

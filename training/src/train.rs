//! One training run: data, model, `burn-train`'s `Learner` with the
//! dashboard, per-epoch checkpoints and resume, then the final report (dev, and test when
//! the dataset has one).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::data::dataloader::DataLoader;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::{ComposedCheckpointingStrategy, KeepLastNCheckpoints};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::{
    ExecutionStrategy, Interrupter, Learner, LearningComponentsMarker, MultiDeviceOptim,
    SupervisedTraining,
};
use captioner_datasets::files::write_file;
use captioner_datasets::vocab::PAD;
use captioner_datasets::Vocab;
use captioner_datasets::{CaptionItem, Split};
use captioner_model::weights_file::recorder_message;
use captioner_model::{
    Batching, CaptionBatch, Captioner, CaptionerConfig, Captioning, DecoderConfig, Encoder,
    EncoderConfig, Endings, ModelFiles, Reward, SelfCriticalRequest, Shapes, WeightsRecorder,
};
use serde::{Deserialize, Serialize};

use crate::batcher::{CaptionBatcher, FixedBatch};
use crate::config::DataSource;
use crate::config::{Objective, SelectBy, TrainConfig};
use crate::data::{held_out_split, prepare, DataSummary, OpenCache, RunData};
use crate::evaluate::{evaluate, EvalReport};
use crate::feature_cache::CacheEncoder;
use crate::guard::{Fault, FiniteLoss, Guarded};
use crate::interrupt::{Interruptible, StepCheckpointing};
use crate::loader::OrderedLoader;
use crate::optimizer::EncoderDecoderAdam;
use crate::renderer::PlainRenderer;
use crate::run_dir::{ResumePoint, RunDir, CHECKPOINT_PARTS};
use crate::schedule::{BaseSchedule, PlateauDecay};
use crate::self_critical::{CiderReward, SampleStat, SelfCriticalMetric};
use crate::validation::{
    caption_sample, BestCheckpoint, CaptionScoreMetric, EpochScores, PlateauStop,
    RecordedScoreMetric, ValidationHistory,
};

/// A run stopped before its last epoch, by the user or a signal: it resumes from its last
/// checkpoint. Its `model.mpk`, if written, holds its best validated epoch.
#[derive(Debug)]
pub struct Stopped {
    /// Why (burn-train's interrupt message).
    pub reason: String,
    /// The run.
    pub run: RunDir,
    /// Where it resumes from.
    pub checkpoint: Option<ResumePoint>,
    /// The epoch whose weights `model.mpk` holds.
    pub kept: Option<usize>,
}

impl Stopped {
    /// Where a stopped run resumes from, as a sentence.
    fn resume_hint(run: &RunDir, checkpoint: Option<ResumePoint>) -> String {
        let resume = format!("`train --resume --out {}`", run.root().display());
        match checkpoint {
            Some(ResumePoint {
                step: Some(step), ..
            }) => format!(
                "Its last checkpoint is of epoch {}, step {} of {}: {resume} continues from \
                 there",
                step.epoch, step.steps, step.steps_per_epoch
            ),
            Some(ResumePoint { epochs, .. }) => {
                format!("Its last checkpoint is of epoch {epochs}: {resume} continues from there")
            }
            None => format!(
                "No epoch was completed: `train --out {}` starts it again",
                run.root().display()
            ),
        }
    }
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training stopped ({}). {}.",
            self.reason.trim_end_matches('.'),
            Self::resume_hint(&self.run, self.checkpoint)
        )?;
        if let Some(epoch) = self.kept {
            write!(
                f,
                " {} holds the weights of epoch {epoch}.",
                self.run.weights().with_extension("mpk").display()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Stopped {}

/// What a finished run reports; saved as `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The run folder.
    pub run: String,
    /// Epochs trained in total (fewer than asked when early stopping ended the run).
    pub epochs: usize,
    /// Wall time of this invocation (data, training and evaluation), in seconds.
    pub wall_seconds: f64,
    /// The epoch this invocation resumed after (`--resume`); its time is not in
    /// `wall_seconds`.
    #[serde(default)]
    pub resumed_after: Option<usize>,
    /// What the data held and what was skipped.
    pub data: DataSummary,
    /// The best epoch's validation scores (the model saved is that epoch's), if any epoch
    /// captioned validation images.
    pub best: Option<EpochScores>,
    /// The validation scores of every epoch.
    pub validation: Vec<EpochScores>,
    /// Scores of the final model (the best epoch's): on a dataset on disk, the dev split,
    /// which also picked the best epoch (`picked_best_epoch`); on the shapes, the test scenes.
    pub eval: EvalReport,
    /// Scores of the final model on the test split of a dataset on disk that has one, read
    /// and captioned once, at the end.
    #[serde(default)]
    pub test: Option<EvalReport>,
    /// The settings of the run.
    pub config: TrainConfig,
}

/// The encoder that `config` asks for.
pub fn encoder_config(config: &TrainConfig) -> EncoderConfig {
    config.encoder.config(config.data.image_size())
}

/// The encoder of a run: built, its ImageNet weights loaded when given, and frozen as far as
/// `config` asks. When `resuming`, a weights file that is gone is only a warning unless the
/// run caches features (the cache is keyed by the loaded weights): the checkpoint holds them.
pub fn build_encoder<B: AutodiffBackend>(
    config: &TrainConfig,
    resuming: bool,
    device: &B::Device,
) -> Result<Encoder<B>> {
    let settings = &config.encoder;
    let weights = match settings.weights.as_deref() {
        Some(path) if resuming && !settings.cached() && !path.exists() => {
            eprintln!(
                "warning: {} is gone; the checkpoint holds the encoder's weights",
                path.display()
            );
            None
        }
        weights => weights,
    };
    let (encoder, loaded) = settings
        .build::<B>(config.data.image_size(), weights, device)
        .map_err(anyhow::Error::msg)?;
    if !resuming || weights.is_some() {
        if let Some(line) = settings.weights_line(weights, loaded.as_ref()) {
            eprintln!("{line}");
        }
    }
    let shape = encoder_config(config);
    println!(
        "Encoder {}: {}x{} input, {} grid positions of {} features, {}",
        settings.name,
        shape.image_size(),
        shape.image_size(),
        shape.grid_positions(),
        shape.feature_dim(),
        settings.describe_mode()
    );
    Ok(encoder)
}

/// The model shape that `config` asks for, with a vocabulary of `vocab_size` words.
pub fn model_config(config: &TrainConfig, vocab_size: usize) -> CaptionerConfig {
    let encoder = encoder_config(config);
    let model = &config.model;
    let decoder = DecoderConfig::new(vocab_size, encoder.feature_dim())
        .with_embed_dim(model.embed_dim)
        .with_attention_dim(model.attention_dim)
        .with_hidden_dim(model.hidden_dim)
        .with_dropout(model.dropout);
    CaptionerConfig::new(encoder, decoder)
        .with_attention_regularization(model.attention_regularization)
        .with_input(Some(config.data.resize()))
}

/// The optimiser of a run on `devices` devices: Adam with PyTorch's epsilon, which recipes
/// written for PyTorch's Adam assume (Burn's default, 1e-5, damps the updates of rarely seen
/// words' embeddings and output rows), gradients clipped element-wise, and the encoder's own
/// rate. Data-parallel rounds sum the devices' gradients; Adam's update does not depend on
/// their scale, so only the clipping threshold is scaled with them.
pub fn optimizer<B: AutodiffBackend>(
    config: &TrainConfig,
    devices: usize,
) -> EncoderDecoderAdam<B> {
    let clip = config.optimizer.grad_clip * devices.max(1) as f32;
    let adam = AdamConfig::new()
        .with_epsilon(1e-8)
        .with_grad_clipping(Some(GradientClippingConfig::Value(clip)));
    EncoderDecoderAdam::new(&adam, config.encoder_lr() / config.optimizer.lr)
}

/// Optimiser steps in an epoch of `items` training captions in batches of `batch_size` on
/// `devices` devices: burn-train's multi-device strategy gives each device a contiguous
/// share (the last one the remainder) and steps once per round of one batch per device.
pub fn rounds_per_epoch(items: usize, batch_size: usize, devices: usize) -> usize {
    let devices = devices.max(1);
    let largest_share = items - (devices - 1) * (items / devices);
    largest_share.div_ceil(batch_size.max(1))
}

/// Trains on the data of `config` into `run`, resuming from `resume_from` when given, with
/// batches laid out for `shapes` (the backend's), and returns the held-out report (also
/// written to `report.json`). Once `request` is set (Ctrl-C; the dashboard's `q` sets it
/// too) the run checkpoints the step it is in, or finishes its epoch, and ends with
/// [`Stopped`]: it can be resumed from there ([`crate::interrupt`]).
///
/// With more than one device in `devices` (the first is the main one) training is
/// data-parallel through burn-train's multi-device strategy: each device takes whole batches
/// from its share of the data, and their gradients are summed into one update on the main
/// device per round. Validation and the report run on the main device.
pub fn train<B: AutodiffBackend>(
    devices: Vec<B::Device>,
    config: TrainConfig,
    run: &RunDir,
    resume_from: Option<ResumePoint>,
    shapes: Shapes,
    request: Interrupter,
) -> Result<TrainReport> {
    let started = Instant::now();
    if devices.is_empty() {
        bail!("training needs a device");
    }
    let setup = Setup::<B> {
        config,
        run: run.clone(),
        devices,
        resume_from,
        shapes,
        request,
        stop: Interrupter::new(),
        fault: Fault::default(),
    };
    setup.start()?;
    let (data, model) = setup.data_and_model()?;
    let steps = setup.steps(&data)?;
    let history = ValidationHistory::new(setup.config.validation.clone());
    let loaders = setup.loaders(&data, steps, &history);
    let training = setup.supervised_training(loaders, &history, steps);
    let model = setup.launch(training, model, &history, steps)?;
    setup.report(model, data, history, started)
}

/// Epochs trained in all: fewer than asked when early stopping or the user ended the run.
fn epochs_trained(history: &ValidationHistory, config: &TrainConfig) -> usize {
    history.epochs().last().map_or(config.epochs, |e| e.epoch)
}

/// What every phase of a run reads: its settings and folder, its devices, where it resumes,
/// the backend's shapes and the user's stop request.
struct Setup<B: AutodiffBackend> {
    config: TrainConfig,
    run: RunDir,
    /// Every device (at least one); the main one first.
    devices: Vec<B::Device>,
    resume_from: Option<ResumePoint>,
    shapes: Shapes,
    /// Set by Ctrl-C or the dashboard's `q`; it reaches burn-train's loop through the
    /// optimiser, after the step's checkpoint ([`crate::interrupt`]).
    request: Interrupter,
    /// burn-train's loop stops on this one.
    stop: Interrupter,
    /// Set when the loss goes wrong: no checkpoint is written after it.
    fault: Fault,
}

/// Where a run stands in its optimiser steps.
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// Steps in an epoch.
    per_epoch: usize,
    /// Epochs completed before this invocation.
    epochs_done: usize,
    /// Steps of the next epoch taken before this invocation (a run resumed mid-epoch).
    steps_done: usize,
}

/// The two loaders of a run and the validation metrics that score its captions.
struct Loaders<B: AutodiffBackend> {
    train: Arc<dyn DataLoader<B, CaptionBatch<B>>>,
    valid: Arc<dyn DataLoader<B::InnerBackend, CaptionBatch<B::InnerBackend>>>,
    /// Scores the validation captions by the measure that picks the best epoch.
    scoring: CaptionScoreMetric,
    /// Shows the other measure, read from the record `scoring` keeps.
    recorded: RecordedScoreMetric,
}

/// burn-train's learning components of a run.
type Components<B> =
    LearningComponentsMarker<B, PlateauDecay, Captioner<B>, Interruptible<EncoderDecoderAdam<B>>>;

impl<B: AutodiffBackend> Setup<B> {
    /// The main device: validation, the checkpoints read back and the report run there.
    fn device(&self) -> &B::Device {
        &self.devices[0]
    }

    /// Checks the settings, writes them into the run folder and seeds every device.
    fn start(&self) -> Result<()> {
        let (config, run) = (&self.config, &self.run);
        config.check().map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(run.root())
            .with_context(|| format!("cannot create the run folder {}", run.root().display()))?;
        run.save_train_config(config)?;
        for device in &self.devices {
            B::seed(device, config.seed);
        }
        Ok(())
    }

    /// The data (features cached first when the run caches them), its vocabulary and the
    /// model, started from a first stage's weights when `init_from` names one. Writes
    /// `vocab.json` and `model.json`.
    fn data_and_model(&self) -> Result<(RunData, Captioner<B>)> {
        let (config, run, device) = (&self.config, &self.run, self.device());
        // A resumed run keeps its vocabulary; a second stage takes its first stage's.
        let init_from = config.init_from.as_deref().map(ModelFiles::new);
        let saved_vocab = match (self.resume_from, &init_from) {
            (Some(_), _) => Some(Vocab::load(&run.vocab()).map_err(anyhow::Error::msg)?),
            (None, Some(from)) => Some(Vocab::load(&from.vocab()).map_err(anyhow::Error::msg)?),
            (None, None) => None,
        };
        // The encoder comes first: a feature cache is made with its weights, before the
        // vocabulary (and so the decoder's size) is known.
        let encoder = build_encoder::<B>(config, self.resume_from.is_some(), device)?;
        let cached = match &config.data {
            DataSource::Files(files) if config.encoder.cached() => Some(files),
            _ => None,
        };
        let shape = encoder_config(config);
        let open_cache = |paths: &[std::path::PathBuf]| {
            let files = cached.expect("only called for cached runs");
            CacheEncoder::open_for_dataset(&encoder.valid(), &shape, files, device, paths)
        };
        let data = prepare(
            &config.data,
            saved_vocab,
            config.min_word_freq,
            cached.map(|_| &open_cache as OpenCache),
        )?;
        data.vocab
            .save(&run.vocab())
            .with_context(|| format!("cannot write {}", run.vocab().display()))?;
        let model_config = model_config(config, data.vocab.len());
        write_file(
            &run.model_config(),
            serde_json::to_string_pretty(&model_config)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", run.model_config().display()))?;
        let mut model = model_config.init_with_encoder(encoder, device);
        if let (Some(from), None) = (&init_from, self.resume_from) {
            let path = from.weights();
            model = model
                .load_file(&path, &WeightsRecorder::new(), device)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot start from {}: {}. The first stage's model must have this \
                         run's encoder and decoder sizes (its model.json)",
                        path.display(),
                        recorder_message(e)
                    )
                })?;
            println!("Starting from the weights of {}", from.root().display());
        }
        println!(
            "{} training images ({} captions), vocabulary of {} words",
            data.train.num_images(),
            data.train.len(),
            data.vocab.len()
        );
        Ok((data, model))
    }

    /// The steps of an epoch of `data`, and how many this run has taken before: a run
    /// resumed mid-epoch must make as many steps an epoch as it did.
    fn steps(&self, data: &RunData) -> Result<Steps> {
        let items = match self.config.objective {
            Objective::CrossEntropy => data.train.len(),
            Objective::SelfCritical(_) => data.train.num_images(),
        };
        let per_step = self.config.images_per_step();
        let per_epoch = rounds_per_epoch(items, per_step, self.devices.len());
        let (epochs_done, steps_done) = match self.resume_from {
            Some(ResumePoint {
                epochs,
                step: Some(step),
            }) => {
                if step.steps_per_epoch != per_epoch {
                    bail!(
                        "{} stopped at step {} of {} in epoch {}, but its data now makes {} \
                         steps an epoch: resume with the data and settings it was started with",
                        self.run.root().display(),
                        step.steps,
                        step.steps_per_epoch,
                        step.epoch,
                        per_epoch
                    );
                }
                (epochs, step.steps)
            }
            Some(ResumePoint { epochs, step: None }) => (epochs, 0),
            None => (0, 0),
        };
        Ok(Steps {
            per_epoch,
            epochs_done,
            steps_done,
        })
    }

    /// The training loader, the validation loader and the metrics that score its captions.
    fn loaders(&self, data: &RunData, steps: Steps, history: &ValidationHistory) -> Loaders<B> {
        let config = &self.config;
        let endings = Arc::new(Endings::of(&data.vocab));
        let batcher = CaptionBatcher::new(config.data.image_size())
            .with_resize(data.held_out.resize)
            .with_cache(data.held_out.cache.clone());
        // One captioning pass and one scoring per epoch: the scoring metric shows the score
        // that picks the best epoch and records all of them; the other is read from the record.
        let (beam, select_by) = (config.search.beam_size, config.validation.select_by);
        let other = match select_by {
            SelectBy::Bleu4 => SelectBy::Cider,
            SelectBy::Cider => SelectBy::Bleu4,
        };
        Loaders {
            train: self.train_loader(batcher.clone(), data, &endings, steps),
            valid: self.valid_loader(batcher, data, endings),
            scoring: CaptionScoreMetric::new(
                select_by,
                beam,
                Arc::new(data.vocab.clone()),
                data.valid_references.clone(),
                history.clone(),
            ),
            recorded: RecordedScoreMetric::new(other, beam, history.clone()),
        }
    }

    /// Training batches in a shuffled order: a caption an item for cross-entropy; an image
    /// an item, with all its references, for self-critical training. Resumed, the loader
    /// goes on with the data order of the epoch after the checkpoint's.
    fn train_loader(
        &self,
        batcher: CaptionBatcher,
        data: &RunData,
        endings: &Arc<Endings>,
        steps: Steps,
    ) -> Arc<dyn DataLoader<B, CaptionBatch<B>>> {
        let (config, shapes) = (&self.config, self.shapes);
        let per_step = config.images_per_step();
        let hflip = matches!(&config.data, DataSource::Files(f) if f.hflip);
        let batcher = batcher.with_hflip(hflip.then_some(config.seed));
        let (batcher, items): (_, Arc<dyn Dataset<CaptionItem>>) = match config.objective {
            Objective::CrossEntropy => (
                batcher.with_shapes(shapes, FixedBatch::training(config.batch_size)),
                data.train.clone(),
            ),
            Objective::SelfCritical(scst) => {
                println!(
                    "Self-critical training: {} samples an image, {} images a step, rewarded \
                     by CIDEr-D against the training references{}, baseline: {}",
                    scst.samples,
                    per_step,
                    match scst.reward {
                        Reward::Cider => "",
                        Reward::WholeSentences => " (nothing for a caption not a whole sentence)",
                    },
                    scst.baseline
                );
                let reward = CiderReward::new(
                    Arc::new(data.vocab.clone()),
                    &data.train_references,
                    scst.reward,
                );
                let request = SelfCriticalRequest {
                    image_ids: Vec::new(),
                    config: scst,
                    seed: config.seed,
                    endings: endings.clone(),
                    reward: Arc::new(reward),
                };
                let images = data.train.per_image();
                let per_image = FixedBatch {
                    images: per_step,
                    captions: config.batch_size.max(per_step * images.most_captions()),
                };
                (
                    batcher
                        .with_shapes(shapes, per_image)
                        .with_self_critical(request),
                    Arc::new(images),
                )
            }
        };
        let loader = OrderedLoader::new(batcher, items, per_step, self.device().clone())
            .shuffle(config.seed)
            .reseed_backend(config.seed)
            .workers(config.workers)
            .starting_epoch(steps.epochs_done)
            .skipping(steps.steps_done);
        Arc::new(loader)
    }

    /// Validation batches: every image once for the loss, and a sample of them captioned.
    fn valid_loader(
        &self,
        batcher: CaptionBatcher,
        data: &RunData,
        endings: Arc<Endings>,
    ) -> Arc<dyn DataLoader<B::InnerBackend, CaptionBatch<B::InnerBackend>>> {
        let config = &self.config;
        let sample = caption_sample(data.valid.num_images(), config.validation.caption_images);
        println!(
            "Validation: every epoch {} of {} images captioned (beam {}), best epoch by {}",
            sample.len(),
            data.valid.num_images(),
            config.search.beam_size,
            config.validation.select_by.label()
        );
        let valid = data.valid.per_image();
        // Packed, a batch of pictures; fixed, as many images as fill a training step's rows.
        let (batch, images) = match self.shapes {
            Shapes::Fixed => FixedBatch::validation(config.batch_size, valid.most_captions()),
            Shapes::Packed => (FixedBatch::training(config.batch_size), config.batch_size),
        };
        let batcher = batcher
            .with_decode(config.search, endings, Arc::new(sample))
            .with_shapes(self.shapes, batch);
        Arc::new(
            OrderedLoader::new(batcher, valid, images, self.device().clone())
                .workers(config.workers),
        )
    }

    /// burn-train's supervised training of `loaders`: its metrics, checkpoints (of every
    /// epoch, the best one kept; of the step the user stops in, read back on resume), early
    /// stopping, the devices and the dashboard (plain lines when stdout is not a terminal).
    fn supervised_training(
        &self,
        loaders: Loaders<B>,
        history: &ValidationHistory,
        steps: Steps,
    ) -> SupervisedTraining<Components<B>> {
        let (config, run) = (&self.config, &self.run);
        let pad = PAD as usize;
        let mut training = SupervisedTraining::new(run.root(), loaders.train, loaders.valid)
            .with_interrupter(self.stop.clone())
            .metric_train(
                FiniteLoss::new(self.fault.clone(), self.stop.clone())
                    .resumed_at(steps.epochs_done + 1, steps.steps_done),
            )
            .metric_train_numeric(LossMetric::new())
            .metric_valid_numeric(LossMetric::new());
        training = match config.objective {
            Objective::CrossEntropy => {
                training.metric_train_numeric(AccuracyMetric::new().with_pad_token(pad))
            }
            Objective::SelfCritical(_) => training
                .metric_train_numeric(SelfCriticalMetric::new(SampleStat::Reward))
                .metric_train_numeric(SelfCriticalMetric::new(SampleStat::GreedyReward))
                .metric_train_numeric(SelfCriticalMetric::new(SampleStat::Length)),
        };
        // Resumed mid-epoch, burn-train loads the previous epoch's checkpoint: it gets the
        // step's files under those names.
        let mut recorder = WeightsRecorder::new();
        if steps.steps_done > 0 {
            for part in CHECKPOINT_PARTS {
                recorder = recorder.reading_instead(
                    run.checkpoints()
                        .join(format!("{part}-{}", steps.epochs_done)),
                    run.step_checkpoints().join(part),
                );
            }
        }
        let mut training = training
            .metric_valid_numeric(AccuracyMetric::new().with_pad_token(pad))
            .metric_valid_numeric(loaders.scoring)
            .metric_valid_numeric(loaders.recorded)
            .metric_train_numeric(LearningRateMetric::new())
            .with_file_checkpointer(recorder)
            .with_checkpointing_strategy(Guarded::new(
                ComposedCheckpointingStrategy::builder()
                    .add(KeepLastNCheckpoints::new(2))
                    .add(BestCheckpoint::new(history.clone()))
                    .build(),
                self.fault.clone(),
            ))
            .early_stopping(PlateauStop::new(history.clone()).or_when(self.request.clone()))
            .num_epochs(config.epochs)
            .summary();
        if self.resume_from.is_some() {
            training = training.checkpoint(steps.epochs_done);
        }
        if self.devices.len() > 1 {
            println!(
                "Data-parallel on {} devices: {} captions per device per step",
                self.devices.len(),
                config.batch_size
            );
            training = training.with_training_strategy(
                ExecutionStrategy::multi(self.devices.clone(), MultiDeviceOptim::OptimMainDevice)
                    .into(),
            );
        }
        if std::io::stdout().is_terminal() {
            // The dashboard's `q` makes the same request as Ctrl-C.
            training.renderer(TuiMetricsRendererWrapper::new(
                self.request.clone(),
                self.resume_from.map(|r| r.epochs),
            ))
        } else {
            training.renderer(PlainRenderer::new(Duration::from_secs(10)))
        }
    }

    /// Runs `training` on `model` with the run's schedule and optimiser (which checkpoints
    /// the step once the user asks the run to stop), and returns the run's final model: the
    /// weights of its best validated epoch, read back from that epoch's checkpoint and saved
    /// as `model.mpk`, never the in-memory model of a run stopped mid-epoch. A loss that went
    /// wrong, or the user's request, ends the run with an error that says how to resume.
    fn launch(
        &self,
        training: SupervisedTraining<Components<B>>,
        model: Captioner<B>,
        history: &ValidationHistory,
        steps: Steps,
    ) -> Result<Captioner<B::InnerBackend>> {
        let (config, run) = (&self.config, &self.run);
        let total = config.epochs * steps.per_epoch;
        let schedule = PlateauDecay::new(
            BaseSchedule::new(config.optimizer.lr_schedule, config.optimizer.lr, total)
                .map_err(anyhow::Error::msg)?,
            history.clone(),
        );
        let at = StepCheckpointing {
            request: self.request.clone(),
            stop: self.stop.clone(),
            run: run.clone(),
            schedule: schedule.clone(),
            steps_per_epoch: steps.per_epoch,
            mid_epoch: self.devices.len() == 1,
        };
        let done = steps.epochs_done * steps.per_epoch + steps.steps_done;
        let optimizer = Interruptible::new(optimizer(config, self.devices.len()), at, done);
        let step_saved = optimizer.saved();
        let result = training.launch(Learner::new(model, optimizer, schedule));
        let step_saved = step_saved.lock().expect("step checkpoint lock").take();

        let (last_checkpoint, _) = run.last_checkpoint();
        let last_epoch = last_checkpoint.map(|epochs| ResumePoint { epochs, step: None });
        if let Some(fault) = self.fault.get() {
            // A step checkpoint taken as the loss went wrong holds spoiled weights.
            run.drop_step_checkpoint()?;
            bail!(
                "{fault}: training stopped. {}. Lower --lr or --grad-clip, then resume.",
                Stopped::resume_hint(run, last_epoch)
            );
        }
        let keep = history.best().map(|b| b.epoch).or(last_checkpoint);
        let model = match keep {
            Some(epoch) => {
                let path = run.checkpoints().join(format!("model-{epoch}"));
                let model = result
                    .model
                    .load_file(&path, &WeightsRecorder::new(), self.device())
                    .map_err(|e| anyhow::anyhow!(recorder_message(e)))
                    .with_context(|| format!("cannot load the checkpoint of epoch {epoch}"))?;
                model
                    .clone()
                    .save_file(run.weights(), &WeightsRecorder::new())
                    .map_err(|e| anyhow::anyhow!(recorder_message(e)))?;
                model
            }
            None => result.model,
        };
        let stopped_early = step_saved.is_some() || epochs_trained(history, config) < config.epochs;
        if let (Some(reason), true) = (self.request.get_message(), stopped_early) {
            let checkpoint = match step_saved {
                Some(Ok(step)) => Some(ResumePoint {
                    epochs: step.epoch - 1,
                    step: Some(step),
                }),
                Some(Err(why)) => {
                    eprintln!("warning: cannot write the checkpoint of the step: {why}");
                    last_epoch
                }
                None => last_epoch,
            };
            return Err(Stopped {
                reason,
                run: run.clone(),
                checkpoint,
                kept: keep,
            }
            .into());
        }
        // The run went on past any step it stopped at before.
        run.drop_step_checkpoint()?;
        Ok(model)
    }

    /// Scores the final `model` on the held-out images (and on the test split of a dataset
    /// on disk that has one) and writes the run's `report.json`.
    fn report(
        self,
        model: Captioner<B::InnerBackend>,
        data: RunData,
        history: ValidationHistory,
        started: Instant,
    ) -> Result<TrainReport> {
        let best = history.best();
        if let Some(best) = &best {
            println!(
                "Best epoch: {} (validation BLEU-4 {:.4}, CIDEr-D {:.4}); its weights are the \
                 run's",
                best.epoch, best.scores.bleu[3], best.scores.cider
            );
        }
        let device = self.device().clone();
        let config = self.config;
        let shape = model_config(&config, data.vocab.len());
        let input = data.held_out.resize;
        let captioning = Captioning::new(model, data.vocab, shape, input, &device);
        // A training batch's size: on a GPU, the searches' shapes are already compiled.
        let batching = Batching {
            batch_size: config.batch_size,
            shapes: self.shapes,
        };
        let mut eval = evaluate(&captioning, &data.held_out, &config.search, batching);
        eval.picked_best_epoch = matches!(config.data, DataSource::Files(_));
        let test = match &config.data {
            DataSource::Files(files) if data.summary.splits.contains_key(&Split::Test) => {
                let open_cache = |paths: &[std::path::PathBuf]| {
                    let encoder = &captioning.model.encoder;
                    let shape = encoder_config(&config);
                    CacheEncoder::open_for_dataset(encoder, &shape, files, &device, paths)
                };
                let cache = config.encoder.cached().then_some(&open_cache as OpenCache);
                let held_out = held_out_split(files, Split::Test, cache)?;
                Some(evaluate(&captioning, &held_out, &config.search, batching))
            }
            _ => None,
        };
        let epochs = history.epochs();
        let report = TrainReport {
            run: self.run.root().display().to_string(),
            epochs: epochs_trained(&history, &config),
            wall_seconds: started.elapsed().as_secs_f64(),
            resumed_after: self.resume_from.map(|r| r.epochs),
            data: data.summary,
            best,
            validation: epochs,
            eval,
            test,
            config,
        };
        write_file(
            &self.run.report(),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", self.run.report().display()))?;
        Ok(report)
    }
}

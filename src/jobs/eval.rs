//! Captioning a whole split with a trained run and scoring it (the job of `eval model`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::{DatasetName, Split};
use captioner_model::{Batching, Captioning, Ensemble, ModelFiles, SearchConfig};
use captioner_training::coco_files::{write_references, write_results};
use captioner_training::config::{DataSource, FilesConfig, TrainConfig};
use captioner_training::data::held_out_split;
use captioner_training::evaluate::{caption_held_out, score_captions, EvalReport, HeldOut};
use captioner_training::feature_cache::CacheEncoder;
use captioner_training::RunDir;

use crate::decoding::searches;
use crate::device::{run_chosen, BackendJob, DeviceKind, Target};

/// A trained model (or several, captioning together) to caption a whole split with and score.
pub struct ModelJob {
    /// The run folders written by `train`, or folders written by `export`: the first one's
    /// data and search are the job's own; several caption together (an ensemble).
    pub models: Vec<PathBuf>,
    /// The dataset to caption; `None`: the run's own (for an export, the one its metadata
    /// names).
    pub dataset: Option<DatasetName>,
    /// Where that dataset is; `None`: where the run read it from (an export does not say).
    pub data_dir: Option<PathBuf>,
    /// The split to caption.
    pub split: Split,
    /// The beam sizes to score, each in turn; empty: the run's own search.
    pub beam_sizes: Vec<u16>,
    /// Longest caption in words; `None`: the run's own.
    pub max_len: Option<u16>,
    /// No two-word phrase twice in a caption ([`Ensemble::blocking_repeats`]).
    pub block_repeats: bool,
    /// No caption ending on a cut ending ([`Ensemble::blocking_cut_endings`]).
    pub block_cut_endings: bool,
    /// Beam search's length normalisation ([`SearchConfig::length_penalty`]); `None`: the
    /// run's own.
    pub length_penalty: Option<f32>,
    /// Images captioned together.
    pub batch_size: usize,
    /// Write the captions here in the COCO results format (with several beam sizes, the
    /// beam size is added to the file name: results.beam3.json).
    pub results_out: Option<PathBuf>,
    /// Write the split's reference captions here in the COCO annotation format.
    pub references_out: Option<PathBuf>,
}

/// Other data was named for a run trained on the shapes scenes, which can caption only those.
#[derive(Debug, thiserror::Error)]
#[error("this run was trained on the shapes scenes: it can caption only those, not other data")]
pub struct ShapesRunOnly;

/// An `export` folder holds no training settings, so not where its data is: the dataset's
/// folder must be given (and the dataset, when the export's metadata does not name it).
#[derive(Debug, thiserror::Error)]
#[error("{} is an exported model, which does not say where {} is", folder.display(), dataset.map_or("its data".to_string(), |d| format!("its dataset ({d})")))]
pub struct ExportNeedsData {
    /// The export folder.
    pub folder: PathBuf,
    /// The dataset its metadata names, if any.
    pub dataset: Option<DatasetName>,
}

impl ModelJob {
    /// The images to caption with their references, as the model in `folder` reads them: the
    /// run's data unless the job names other data.
    fn held_out<B: AutodiffBackend>(
        &self,
        folder: &std::path::Path,
        captioning: &Captioning<B::InnerBackend>,
        trained: Option<&TrainConfig>,
        device: &B::Device,
    ) -> Result<HeldOut> {
        let Some(trained) = trained else {
            return self.held_out_of_export(folder, captioning);
        };
        let files = match (&trained.data, self.dataset, &self.data_dir) {
            (DataSource::Shapes(shapes), None | Some(DatasetName::Shapes), None) => {
                return Ok(HeldOut::shapes(shapes, self.split));
            }
            (DataSource::Files(files), dataset, data_dir) => {
                // Data named by the flags is read whole: the run's annotation format and its
                // cuts of the splits (`--train-images`, `--valid-images`) were its own data's.
                let named = dataset.is_some() || data_dir.is_some();
                FilesConfig {
                    dataset: dataset.unwrap_or(files.dataset),
                    data_dir: data_dir.clone().unwrap_or_else(|| files.data_dir.clone()),
                    format: if named { None } else { files.format },
                    train_images: if named { None } else { files.train_images },
                    valid_images: if named { None } else { files.valid_images },
                    ..files.clone()
                }
            }
            (DataSource::Shapes(_), _, _) => return Err(ShapesRunOnly.into()),
        };
        if !trained.encoder.cached() {
            return held_out_split(&files, self.split, None);
        }
        // A run that learned from cached features reads the split through a cache of its
        // own (built once; later evaluations reuse it).
        let open = |paths: &[PathBuf]| {
            CacheEncoder::open_for_dataset(
                &captioning.model.encoder,
                &captioning.config.encoder,
                &files,
                device,
                paths,
            )
        };
        held_out_split(&files, self.split, Some(&open))
    }

    /// The split of the dataset given (or named by the export's metadata), its pictures
    /// prepared as the export's `config.json` says and encoded as they are captioned.
    fn held_out_of_export<B: burn::prelude::Backend>(
        &self,
        folder: &std::path::Path,
        captioning: &Captioning<B>,
    ) -> Result<HeldOut> {
        let path = ModelFiles::new(folder).exported_weights();
        let trained_on = captioner_model::export::metadata_of_file(&path)
            .ok()
            .and_then(|m| m.get("dataset").and_then(|d| d.parse().ok()))
            .filter(|d| *d != DatasetName::Shapes);
        let (Some(dataset), Some(data_dir)) = (self.dataset.or(trained_on), &self.data_dir) else {
            return Err(ExportNeedsData {
                folder: folder.to_path_buf(),
                dataset: trained_on,
            }
            .into());
        };
        let mut files = FilesConfig::new(dataset, data_dir.clone());
        files.image_size = captioning.input.size;
        files.resize = captioning.input.mode();
        held_out_split(&files, self.split, None)
    }
}

impl BackendJob for ModelJob {
    type Output = Vec<EvalReport>;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Self::Output> {
        let device = target.device;
        let mut models = Vec::with_capacity(self.models.len());
        let mut trained = Vec::with_capacity(self.models.len());
        for folder in &self.models {
            let files = ModelFiles::new(folder);
            let (captioning, train_config) = match files.is_export() {
                true => (Captioning::load(&files, &device)?, None),
                false => {
                    let run = RunDir::new(folder).load::<B::InnerBackend>(&device)?;
                    (run.captioning, Some(run.train_config))
                }
            };
            models.push(captioning);
            trained.push(train_config);
        }
        let ensemble = Ensemble::new(&self.models, &models)?
            .blocking_repeats(self.block_repeats)
            .blocking_cut_endings(self.block_cut_endings)?;
        let mut held_out = Vec::with_capacity(models.len());
        for ((folder, captioning), trained) in self.models.iter().zip(&models).zip(&trained) {
            held_out.push(self.held_out::<B>(folder, captioning, trained.as_ref(), &device)?);
        }
        for (folder, split) in self.models.iter().zip(&held_out).skip(1) {
            if split.ids != held_out[0].ids {
                bail!(
                    "{} and {} read different {} images ({} and {}): the models of an ensemble \
                     must caption the same images",
                    self.models[0].display(),
                    folder.display(),
                    split.split,
                    held_out[0].ids.len(),
                    split.ids.len()
                );
            }
        }
        let trained = trained.swap_remove(0);
        eprintln!(
            "Captioning {} {} images{}{}",
            held_out[0].images.len(),
            held_out[0].split,
            trained
                .as_ref()
                .map_or(String::new(), |t| format!(" of {}", t.data.name())),
            match models.len() {
                1 => String::new(),
                n => format!(" with {n} models together"),
            }
        );
        let splits: Vec<&HeldOut> = held_out.iter().collect();
        let held_out = &held_out[0];
        if let Some(path) = &self.references_out {
            write_references(path, &held_out.ids, None, &held_out.references)?;

            eprintln!("References: {}", path.display());
        }
        // An export searches as `infer` does by default.
        let own_search = trained.map_or_else(SearchConfig::default, |t| t.search);
        let searches = searches(
            &own_search,
            &self.beam_sizes,
            self.max_len.map(usize::from),
            self.length_penalty,
        );
        let batching = Batching {
            batch_size: self.batch_size,
            shapes: target.shapes,
        };
        let found = caption_held_out(&ensemble, &splits, &searches, batching);
        let mut reports = Vec::with_capacity(searches.len());
        for (search, texts) in searches.iter().zip(&found) {
            let beam = search.beam_size;
            if let Some(path) = &self.results_out {
                let path = if self.beam_sizes.len() > 1 {
                    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                    path.with_file_name(format!("{stem}.beam{beam}.json"))
                } else {
                    path.clone()
                };
                write_results(&path, &held_out.ids, texts)?;
                eprintln!("Results: {}", path.display());
            }
            reports.push(score_captions(held_out, texts, beam));
        }
        Ok(reports)
    }
}

/// Captions and scores `job`'s split on the backend `device` asks for (said on stderr
/// first): one report per beam size.
#[inline(never)]
pub fn run(device: DeviceKind, job: ModelJob) -> Result<Vec<EvalReport>> {
    run_chosen(device, job)
}

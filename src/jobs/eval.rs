//! Captioning a whole split with a trained run and scoring it (the job of `eval model`).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::{DatasetName, Split};
use captioner_model::Batching;
use captioner_training::coco_files::{write_references, write_results};
use captioner_training::config::{DataSource, FilesConfig};
use captioner_training::data::held_out_split;
use captioner_training::evaluate::{caption_held_out, score_captions, EvalReport, HeldOut};
use captioner_training::feature_cache::CacheEncoder;
use captioner_training::RunDir;

use crate::decoding::searches;
use crate::device::{run_chosen, BackendJob, DeviceKind, Target};

/// A trained run to caption a whole split with and score.
pub struct ModelJob {
    /// The run folder written by `train`.
    pub model: PathBuf,
    /// The dataset to caption; `None`: the run's own.
    pub dataset: Option<DatasetName>,
    /// Where that dataset is; `None`: where the run read it from.
    pub data_dir: Option<PathBuf>,
    /// The split to caption.
    pub split: Split,
    /// The beam sizes to score, each in turn; empty: the run's own search.
    pub beam_sizes: Vec<u16>,
    /// Longest caption in words; `None`: the run's own.
    pub max_len: Option<u16>,
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

impl ModelJob {
    /// The images to caption with their references: the run's data unless the flags name
    /// other data.
    fn held_out<B: AutodiffBackend>(
        &self,
        run: &captioner_training::LoadedRun<B::InnerBackend>,
        device: &B::Device,
    ) -> Result<HeldOut> {
        let files = match (&run.train_config.data, self.dataset, &self.data_dir) {
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
        if !run.train_config.encoder.cached() {
            return held_out_split(&files, self.split, None);
        }
        // A run that learned from cached features reads the split through a cache of its
        // own (built once; later evaluations reuse it).
        let open = |paths: &[PathBuf]| {
            let captioning = &run.captioning;
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
}

impl BackendJob for ModelJob {
    type Output = Vec<EvalReport>;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Self::Output> {
        let device = target.device;
        let run = RunDir::new(&self.model).load::<B::InnerBackend>(&device)?;
        let held_out = self.held_out::<B>(&run, &device)?;
        eprintln!(
            "Captioning {} {} images of {}",
            held_out.images.len(),
            held_out.split,
            run.train_config.data.name()
        );
        if let Some(path) = &self.references_out {
            write_references(path, &held_out.ids, None, &held_out.references)?;

            eprintln!("References: {}", path.display());
        }
        let mut reports = Vec::new();
        for search in searches(
            &run.train_config.search,
            &self.beam_sizes,
            self.max_len.map(usize::from),
        ) {
            let beam = search.beam_size;
            let batching = Batching {
                batch_size: self.batch_size,
                shapes: target.shapes,
            };
            let texts = caption_held_out(&run.captioning, &held_out, &search, batching);
            if let Some(path) = &self.results_out {
                let path = if self.beam_sizes.len() > 1 {
                    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                    path.with_file_name(format!("{stem}.beam{beam}.json"))
                } else {
                    path.clone()
                };
                write_results(&path, &held_out.ids, &texts)?;
                eprintln!("Results: {}", path.display());
            }
            reports.push(score_captions(&held_out, &texts, beam));
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

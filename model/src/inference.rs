//! Captioning pictures with a trained model: what `infer`, `eval` and the end-of-run report
//! share (validation captions inside burn-train's steps through the same search,
//! [`Captioner::caption_rows`]). Nothing here uses burn-train.
//!
//! A run folder holds what captioning reads ([`ModelFiles`]): `model.json` (the model's shape
//! and how its pictures are prepared), `vocab.json` and the weights `model.mpk`; no
//! optimiser state. [`Captioning::load`] reads them once; [`Captioning::prepare`]
//! fits pictures of any size as the run's training pictures were and
//! [`Captioning::encode`] gives their grids, which an [`crate::ensemble::Ensemble`] of one or
//! more models captions.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use captioner_datasets::decode::{Resize, ResizeMode};
use captioner_datasets::image::{to_normalized_chw, RgbImage};
use captioner_datasets::Vocab;
use serde::Deserialize;

use crate::captioner::{Captioner, CaptionerConfig};
use crate::export::load_safetensors;
use crate::rows::{pad_with_first_row, Shapes};
use crate::search::Endings;
use crate::weights_file::{recorder_message, shape_mismatch, LoadError};

pub use crate::weights_file::WeightsRecorder;

/// The files of a run folder that captioning reads.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    root: PathBuf,
}

impl ModelFiles {
    /// The files in the run folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `model.json`: the model's shape ([`CaptionerConfig`]); `config.json` in an exported
    /// folder.
    pub fn model_config(&self) -> PathBuf {
        match self.is_export() {
            true => self.root.join("config.json"),
            false => self.root.join("model.json"),
        }
    }

    /// `model.safetensors`: the weights of a folder written by `export`, read in place of
    /// `model.mpk` ([`crate::export`]).
    pub fn exported_weights(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }

    /// Whether the folder was written by `export` (it holds `model.safetensors`).
    pub fn is_export(&self) -> bool {
        self.exported_weights().is_file()
    }

    /// `vocab.json`.
    pub fn vocab(&self) -> PathBuf {
        self.root.join("vocab.json")
    }

    /// `model.mpk`, the final weights (the recorder adds the extension; this is the path
    /// without it).
    pub fn weights(&self) -> PathBuf {
        self.root.join("model")
    }

    /// `config.json`, the training settings: read only for the picture preparation of runs
    /// saved before `model.json` recorded it.
    pub fn train_config(&self) -> PathBuf {
        self.root.join("config.json")
    }
}

/// How captioning batches its work: pictures per batch, and the backend's shapes (under
/// [`Shapes::Fixed`] a short batch is padded to `batch_size` pictures, and searches run in
/// groups of `batch_size` decoder rows, shapes that training met).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Pictures encoded together.
    pub batch_size: usize,
    /// How the tensors are shaped.
    pub shapes: Shapes,
}

/// A trained captioner, ready to caption pictures.
#[derive(Debug)]
pub struct Captioning<B: Backend> {
    /// The model.
    pub model: Captioner<B>,
    /// Its vocabulary.
    pub vocab: Vocab,
    /// Its shape.
    pub config: CaptionerConfig,
    /// How a picture becomes its input, as its training pictures did.
    pub input: Resize,
    /// The words its captions may not end on, from its vocabulary.
    pub endings: Endings,
    device: B::Device,
}

impl<B: Backend> Captioning<B> {
    /// Loads the model of the run folder `files` onto `device`.
    pub fn load(files: &ModelFiles, device: &B::Device) -> Result<Self, LoadError> {
        let root = files.root();
        if !root.is_dir() {
            return Err(LoadError(format!(
                "{} is not a run folder: pass the folder that `train` wrote (see `train --out`)",
                root.display()
            )));
        }
        let exported = files.is_export();
        let weights = match exported {
            true => files.exported_weights(),
            false => files.weights().with_extension("mpk"),
        };
        if !weights.exists() {
            return Err(LoadError(format!(
                "{} has no trained model ({} is missing): did its training finish?",
                root.display(),
                weights.display()
            )));
        }
        let config = CaptionerConfig::load(files.model_config())
            .map_err(|e| LoadError(format!("{}: {e}", files.model_config().display())))?;
        let vocab = Vocab::load(&files.vocab()).map_err(LoadError)?;
        if vocab.len() != config.decoder.vocab_size {
            return Err(LoadError(format!(
                "{} holds {} words but the model in {} was trained with {}: the files come \
                 from different runs",
                files.vocab().display(),
                vocab.len(),
                root.display(),
                config.decoder.vocab_size
            )));
        }
        let input = match config.input {
            Some(input) => input,
            None => input_of_older_run(files)?,
        };
        let fresh = config.init::<B>(device);
        if exported {
            let model = load_safetensors(fresh, &weights, &vocab, &files.vocab())?;
            return Ok(Self::new(model, vocab, config, input, device));
        }
        let model = fresh
            .clone()
            .load_file(files.weights(), &WeightsRecorder::new(), device)
            .map_err(|e| LoadError(recorder_message(e)))?;
        if let Some((index, want, got)) = shape_mismatch(&fresh, &model) {
            return Err(LoadError(format!(
                "{}: its weights do not fit {} (tensor {index} of the model's parameters is \
                 {got:?}, the model there has {want:?}): the files come from different runs",
                weights.display(),
                files.model_config().display()
            )));
        }
        Ok(Self::new(model, vocab, config, input, device))
    }

    /// A model at hand (a run's final model, as training ends) with the vocabulary and shape
    /// it was trained with; `input` says how its pictures are prepared.
    pub fn new(
        model: Captioner<B>,
        vocab: Vocab,
        config: CaptionerConfig,
        input: Resize,
        device: &B::Device,
    ) -> Self {
        Self {
            model,
            endings: Endings::of(&vocab),
            vocab,
            config,
            input,
            device: device.clone(),
        }
    }

    /// The device the model is on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Side of the square pictures the model takes.
    pub fn image_size(&self) -> usize {
        self.config.encoder.image_size()
    }

    /// The encoder's grids of pictures already prepared as the model takes them (its
    /// [`Resize`] applied: [`crate::Ensemble::prepare`]), all at once:
    /// `[n, positions, channels]`. Under [`Shapes::Fixed`] the encoder runs on them padded to
    /// `batching.batch_size` (a training batch's pictures), shapes met before.
    pub fn encode(&self, prepared: &[&RgbImage], batching: Batching) -> Tensor<B, 3> {
        let size = self.image_size();
        let n = prepared.len();
        let mut pixels = Vec::with_capacity(n * 3 * size * size);
        for picture in prepared {
            pixels.extend(to_normalized_chw(picture, size));
        }
        let images = Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), &self.device);
        match batching.shapes {
            Shapes::Fixed => self
                .model
                .encoder
                .forward(pad_with_first_row(images, batching.batch_size.max(n)))
                .narrow(0, 0, n),
            Shapes::Packed => self.model.encoder.forward(images),
        }
    }
}

/// The picture preparation of a run whose `model.json` predates it, from its `config.json`:
/// `data.image_size` and how pictures were fitted (`data.resize`; `data.center_crop` in the
/// flat layout of the first runs), or squashed for the shapes, which are drawn at the size.
fn input_of_older_run(files: &ModelFiles) -> Result<Resize, LoadError> {
    #[derive(Deserialize)]
    struct Run {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        source: String,
        image_size: usize,
        resize: Option<ResizeMode>,
        center_crop: Option<bool>,
    }
    let path = files.train_config();
    let unreadable = |why: String| {
        LoadError(format!(
            "{}: {why}; model.json does not say how pictures are prepared, so this file must",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
    let data = serde_json::from_str::<Run>(&text)
        .map_err(|e| unreadable(e.to_string()))?
        .data;
    let mode = match (data.source.as_str(), data.resize, data.center_crop) {
        ("shapes", _, _) => ResizeMode::Squash,
        (_, Some(mode), _) => mode,
        (_, None, Some(true)) => ResizeMode::Crop,
        (_, None, Some(false)) => ResizeMode::Squash,
        (_, None, None) => return Err(unreadable("no data.resize".into())),
    };
    Ok(mode.to_size(data.image_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn older_run(config_json: &str) -> Result<Resize, LoadError> {
        let dir = std::env::temp_dir().join(format!(
            "captioner-older-run-{}-{}",
            std::process::id(),
            config_json.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config_json).unwrap();
        let input = input_of_older_run(&ModelFiles::new(&dir));
        std::fs::remove_dir_all(&dir).ok();
        input
    }

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../training/tests/fixtures/config")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn runs_saved_before_model_json_said_how_pictures_are_prepared_read_it_from_config_json() {
        // The flat layout: the show-attend-tell preset squashed, the fine-tuned run cropped,
        // the shapes are drawn at their size.
        let squash = older_run(&fixture("flat-sat-lite0.json")).unwrap();
        assert_eq!(squash, ResizeMode::Squash.to_size(224));
        let crop = older_run(&fixture("flat-fine-tune.json")).unwrap();
        assert_eq!(crop, ResizeMode::Crop.to_size(224));
        let shapes = older_run(&fixture("flat-first.json")).unwrap();
        assert_eq!(shapes, ResizeMode::Squash.to_size(64));
        // The sections' layout names the fitting.
        let sections = r#"{"data": {"source": "files", "image_size": 299, "resize": "crop"}}"#;
        assert_eq!(older_run(sections).unwrap(), ResizeMode::Crop.to_size(299));
        let err = older_run("{}").unwrap_err();
        assert!(err.0.contains("config.json"), "{err}");
    }
}

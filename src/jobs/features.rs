//! A pretrained encoder alone, each picture's feature grid written as a NumPy file (the
//! `features` binary's job).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::image::{to_normalized_chw, RgbImage};
use captioner_datasets::progress::Progress;
use captioner_model::{EncoderConfig, EncoderSettings};

use crate::device::{run_chosen, BackendJob, DeviceKind, Target};
use crate::npy;

/// Pictures to run a pretrained encoder on, each grid to its own NumPy file.
pub struct FeaturesJob {
    /// The encoder and its weights.
    pub settings: EncoderSettings,
    /// The encoder's architecture at the input size asked for.
    pub config: EncoderConfig,
    /// Output file and resized picture, in input order.
    pub pictures: Vec<(PathBuf, Arc<RgbImage>)>,
    /// Pictures encoded together.
    pub batch_size: usize,
    /// The folder the files go to (named in the closing line).
    pub out: PathBuf,
}

impl BackendJob for FeaturesJob {
    type Output = ();
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<()> {
        let device = target.device;
        let size = self.config.image_size();
        let weights = self.settings.weights.as_deref();
        let (encoder, loaded) = self
            .settings
            .build::<B::InnerBackend>(size, weights, &device)
            .map_err(anyhow::Error::msg)?;
        if let Some(line) = self.settings.weights_line(weights, loaded.as_ref()) {
            eprintln!("{line}");
        }
        let (positions, channels) = (self.config.grid_positions(), self.config.feature_dim());
        let bar = Progress::new("encoding", self.pictures.len(), true);
        let started = Instant::now();
        for chunk in self.pictures.chunks(self.batch_size.max(1)) {
            let mut pixels = Vec::with_capacity(chunk.len() * 3 * size * size);
            for (_, image) in chunk {
                pixels.extend(to_normalized_chw(image, size));
            }
            let images = Tensor::<B::InnerBackend, 4>::from_data(
                TensorData::new(pixels, [chunk.len(), 3, size, size]),
                &device,
            );
            let features: Vec<f32> = encoder
                .forward(images)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| anyhow::anyhow!("reading the features back: {e:?}"))?;
            for ((path, _), grid) in chunk.iter().zip(features.chunks(positions * channels)) {
                npy::write_f32(path, &[positions, channels], grid)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            bar.inc(chunk.len());
        }
        bar.finish();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "wrote {} files of [{positions}, {channels}] float32 to {} ({:.1} images/s)",
            self.pictures.len(),
            self.out.display(),
            self.pictures.len() as f64 / seconds.max(1e-9)
        );
        Ok(())
    }
}

/// Encodes `job`'s pictures on the backend `device` asks for (said on stderr first).
#[inline(never)]
pub fn run(device: DeviceKind, job: FeaturesJob) -> Result<()> {
    run_chosen(device, job)
}

//! Filling a feature cache with a frozen encoder: decode the pictures in chunks on every core,
//! run the encoder over them in batches, and store the grids (see
//! [`captioner_datasets::feature_cache`] for the format and the staleness rules).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use captioner_datasets::decode::{decode_all, Resize};
use captioner_datasets::feature_cache::{lock_folder, CacheKey, FeatureCache, FeatureCacheWriter};
use captioner_datasets::image::to_normalized_chw;
use captioner_datasets::progress::Progress;
use captioner_model::{Encoder, EncoderConfig};

use crate::config::FilesConfig;

/// Collects the values of every float parameter, in module order.
struct WeightBytes(Vec<u8>);

impl<B: Backend> ModuleVisitor<B> for WeightBytes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0.extend_from_slice(&data.bytes);
    }
}

/// SHA-256 of a module's weights (values only: parameter ids, which are random, do not count).
pub fn weights_sha256<B: Backend, M: Module<B>>(module: &M) -> String {
    let mut bytes = WeightBytes(Vec::new());
    module.visit(&mut bytes);
    CacheKey::hash_bytes(&bytes.0)
}

/// A frozen encoder ready to fill or open a cache.
#[derive(Debug)]
pub struct CacheEncoder<'a, B: Backend> {
    /// The encoder (its weights decide the key).
    pub encoder: &'a Encoder<B>,
    /// Its settings.
    pub config: &'a EncoderConfig,
    /// How pictures are resized for it.
    pub resize: Resize,
    /// Where it runs.
    pub device: B::Device,
}

impl<'a, B: Backend> CacheEncoder<'a, B> {
    /// The cache of `pictures` of `files`' dataset made by this frozen encoder: the pictures
    /// resized as `files` says, the cache in its cache folder (`--cache-dir`), named after the
    /// dataset. How training, its final report and `eval` all open one.
    pub fn open_for_dataset(
        encoder: &'a Encoder<B>,
        config: &'a EncoderConfig,
        files: &FilesConfig,
        device: &B::Device,
        pictures: &[PathBuf],
    ) -> Result<Arc<FeatureCache>> {
        let cache_encoder = Self {
            encoder,
            config,
            resize: files.resize(),
            device: device.clone(),
        };
        cache_encoder.open_or_build(pictures, &files.cache_dir, files.dataset.name())
    }

    /// The cache of `files` under `root` (a folder named after `prefix` and the key): opened if
    /// a complete one made by this very encoder from these very files is there, built otherwise.
    /// Prints which, and how long building took.
    pub fn open_or_build(
        &self,
        files: &[PathBuf],
        root: &Path,
        prefix: &str,
    ) -> Result<Arc<FeatureCache>> {
        let key = CacheKey {
            encoder: serde_json::to_value(self.config)?,
            weights_sha256: weights_sha256(self.encoder),
            resize: self.resize,
            images_sha256: CacheKey::hash_files(files)?,
            images: files.len(),
        };
        let dir = root.join(key.folder_name(prefix));
        if let Some(cache) = FeatureCache::open(&dir, &key) {
            eprintln!(
                "Feature cache: {} ({} pictures, {} KiB each)",
                dir.display(),
                cache.len(),
                cache.bytes_per_image() / 1024
            );
            return Ok(Arc::new(cache));
        }
        // Built once: another run building the same cache finishes first, and its cache is
        // opened here instead.
        let _lock = lock_folder(&dir)?;
        if let Some(cache) = FeatureCache::open(&dir, &key) {
            eprintln!("Feature cache: {} (built by another run)", dir.display());
            return Ok(Arc::new(cache));
        }
        let started = Instant::now();
        let positions = self.config.grid_positions();
        let channels = self.config.feature_dim();
        let mut writer = FeatureCacheWriter::create(&dir, key, positions, channels)?;
        let bar = Progress::new("caching features", files.len(), true);
        let size = self.resize.size;
        for chunk in files.chunks(256) {
            let decoded = decode_all(chunk, &self.resize, false, true);
            let mut errors = decoded.errors.into_iter();
            for batch in decoded.images.chunks(32) {
                let good: Vec<_> = batch.iter().flatten().collect();
                let mut grids = Vec::new().into_iter();
                if !good.is_empty() {
                    let mut pixels = Vec::with_capacity(good.len() * 3 * size * size);
                    for image in &good {
                        pixels.extend(to_normalized_chw(image, size));
                    }
                    let images = Tensor::<B, 4>::from_data(
                        TensorData::new(pixels, [good.len(), 3, size, size]),
                        &self.device,
                    );
                    let values: Vec<f32> = self
                        .encoder
                        .forward(images)
                        .into_data()
                        .convert::<f32>()
                        .to_vec()
                        .expect("float features");
                    grids = values
                        .chunks(positions * channels)
                        .map(<[f32]>::to_vec)
                        .collect::<Vec<_>>()
                        .into_iter();
                }
                for image in batch {
                    match image {
                        Some(_) => writer.push(&grids.next().expect("one grid a picture"))?,
                        None => writer.push_unreadable(
                            errors.next().expect("one error a failure").to_string(),
                        )?,
                    }
                }
            }
            bar.inc(chunk.len());
        }
        bar.finish();
        let cache = writer.finish()?;
        eprintln!(
            "Feature cache built in {:.1}s: {} ({} pictures, {} KiB each)",
            started.elapsed().as_secs_f64(),
            dir.display(),
            cache.len(),
            cache.bytes_per_image() / 1024
        );
        Ok(Arc::new(cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use captioner_datasets::decode::ResizeMode;
    use captioner_datasets::image::RgbImage;
    use captioner_model::SmallCnnConfig;

    #[test]
    fn two_runs_building_one_cache_at_once_build_it_once_and_read_the_same_features() {
        let dir = std::env::temp_dir().join(format!("captioner-cache-race-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let pictures: Vec<PathBuf> = (0..6u8)
            .map(|i| {
                let path = dir.join(format!("p{i}.png"));
                std::fs::create_dir_all(&dir).unwrap();
                RgbImage::from_fn(20, 16, |x, y| {
                    image::Rgb([i * 40, x as u8 * 12, y as u8 * 15])
                })
                .save(&path)
                .unwrap();
                path
            })
            .collect();
        let config = EncoderConfig::SmallCnn(SmallCnnConfig::new().with_image_size(16));
        let device = Default::default();
        let encoder: Encoder<NdArray> = config.init(&device);
        let root = dir.join("cache");
        let caches: Vec<Arc<FeatureCache>> = std::thread::scope(|scope| {
            let builders: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        CacheEncoder {
                            encoder: &encoder,
                            config: &config,
                            resize: ResizeMode::Squash.to_size(16),
                            device,
                        }
                        .open_or_build(&pictures, &root, "race")
                        .unwrap()
                    })
                })
                .collect();
            builders.into_iter().map(|b| b.join().unwrap()).collect()
        });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for row in 0..pictures.len() {
            caches[0].read_row(row, &mut a);
            caches[1].read_row(row, &mut b);
        }
        assert_eq!(a, b);
        assert!(a.iter().any(|v| *v != 0.0));
        let folders: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
        assert_eq!(folders.len(), 1, "one cache folder");
        let mut names: Vec<String> = std::fs::read_dir(folders[0].as_ref().unwrap().path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".lock", "features.f16", "manifest.json"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}

//! Encoder features stored on disk: with a frozen encoder the grid of every picture is computed
//! once, and training reads it back instead of decoding and encoding the picture every epoch.
//!
//! ```text
//! <cache>/manifest.json   what the features were made from (CacheKey) and their layout
//! <cache>/features.f16    rows of positions x channels half floats, little-endian, one a picture
//! ```
//! A cache is only opened when its manifest's key equals the one asked for (same encoder
//! settings, same weights, same resize, same picture files), so a stale cache is never used;
//! it is written under a temporary name and renamed once complete, so a killed run never
//! leaves a half cache behind. A builder holds the folder's lock ([`lock_folder`]) while it
//! writes: two runs asking for the same cache at once build it once, the second waits and
//! opens what the first wrote.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decode::Resize;
use crate::error::DatasetError;

/// Everything that decides a cache's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The encoder's settings (its JSON config).
    pub encoder: serde_json::Value,
    /// SHA-256 of the encoder's weights.
    pub weights_sha256: String,
    /// How pictures were resized.
    pub resize: Resize,
    /// SHA-256 of the picture list: each file's path, size and modification time, in order.
    pub images_sha256: String,
    /// Number of pictures (rows).
    pub images: usize,
}

impl CacheKey {
    /// SHA-256 (hex) of `files`' paths, sizes and modification times, in order.
    pub fn hash_files(files: &[PathBuf]) -> Result<String, DatasetError> {
        let mut hasher = Sha256::new();
        for path in files {
            let meta = std::fs::metadata(path).map_err(|e| DatasetError::io(path, e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(meta.len().to_le_bytes());
            hasher.update(modified.to_le_bytes());
        }
        Ok(hex(&hasher.finalize()))
    }

    /// SHA-256 (hex) of some bytes, e.g. serialised weights.
    pub fn hash_bytes(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// A short name for the cache folder, derived from the whole key.
    pub fn folder_name(&self, prefix: &str) -> String {
        let json = serde_json::to_vec(self).expect("a key serialises");
        format!("{prefix}-{}", &Self::hash_bytes(&json)[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest of a complete cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    key: CacheKey,
    positions: usize,
    channels: usize,
    dtype: String,
    /// Rows of pictures that could not be decoded (zeros on disk), with the reason.
    unreadable: Vec<(usize, String)>,
}

const MANIFEST: &str = "manifest.json";
const FEATURES: &str = "features.f16";

/// A complete cache, memory-mapped.
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    map: Mmap,
    positions: usize,
    channels: usize,
    images: usize,
    unreadable: Vec<(usize, String)>,
}

impl FeatureCache {
    /// Opens the cache in `dir` if it is complete and was made for `key`; `None` otherwise
    /// (missing, stale or damaged: the caller rebuilds it).
    pub fn open(dir: &Path, key: &CacheKey) -> Option<Self> {
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()?;
        if manifest.key != *key || manifest.dtype != "f16" {
            return None;
        }
        let file = File::open(dir.join(FEATURES)).ok()?;
        let expected = key.images * manifest.positions * manifest.channels * 2;
        if file.metadata().ok()?.len() != expected as u64 {
            return None;
        }
        // SAFETY: the file is only ever written under a temporary name and renamed into place
        // complete; nothing writes to it once it is here.
        let map = unsafe { Mmap::map(&file) }.ok()?;
        Some(Self {
            dir: dir.to_path_buf(),
            map,
            positions: manifest.positions,
            channels: manifest.channels,
            images: key.images,
            unreadable: manifest.unreadable,
        })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `(positions, channels)` of each picture's grid.
    pub fn grid(&self) -> (usize, usize) {
        (self.positions, self.channels)
    }

    /// Rows of pictures that could not be decoded when the cache was made, with the reason.
    pub fn unreadable(&self) -> &[(usize, String)] {
        &self.unreadable
    }

    /// Number of pictures.
    pub fn len(&self) -> usize {
        self.images
    }

    /// True when the cache holds no picture.
    pub fn is_empty(&self) -> bool {
        self.images == 0
    }

    /// Bytes on disk per picture.
    pub fn bytes_per_image(&self) -> usize {
        self.positions * self.channels * 2
    }

    /// Appends the grid of picture `row` to `out`, as f32.
    pub fn read_row(&self, row: usize, out: &mut Vec<f32>) {
        let size = self.bytes_per_image();
        let bytes = &self.map[row * size..(row + 1) * size];
        out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
        );
    }
}

/// Writes a cache row by row; [`FeatureCacheWriter::finish`] makes it visible.
#[derive(Debug)]
pub struct FeatureCacheWriter {
    dir: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    manifest: Manifest,
    rows: usize,
}

/// The exclusive lock on the cache folder `dir` (created if missing), held until the file
/// returned is dropped or the process ends, killed or not. Says on stderr when another process
/// holds it and this one waits.
pub fn lock_folder(dir: &Path) -> Result<File, DatasetError> {
    std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    let path = dir.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DatasetError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => eprintln!(
            "Waiting for another process to finish the feature cache {}",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => return Err(DatasetError::io(&path, e)),
    }
    file.lock().map_err(|e| DatasetError::io(&path, e))?;
    Ok(file)
}

impl Drop for FeatureCacheWriter {
    /// A cache left unfinished (an error, a panic) takes its temporary file with it.
    fn drop(&mut self) {
        if self.tmp.exists() {
            std::fs::remove_file(&self.tmp).ok();
        }
    }
}

impl FeatureCacheWriter {
    /// Starts a cache in `dir` for `key`, grids of `positions` x `channels`.
    pub fn create(
        dir: &Path,
        key: CacheKey,
        positions: usize,
        channels: usize,
    ) -> Result<Self, DatasetError> {
        std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        // A half-written or stale cache in this folder goes first.
        let _ = std::fs::remove_file(dir.join(MANIFEST));
        let tmp = crate::files::temporary_path(&dir.join(FEATURES));
        let file = File::create(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp,
            out: BufWriter::new(file),
            manifest: Manifest {
                key,
                positions,
                channels,
                dtype: "f16".into(),
                unreadable: Vec::new(),
            },
            rows: 0,
        })
    }

    /// Appends the grids of a batch of pictures (`rows x positions x channels` values).
    pub fn push(&mut self, values: &[f32]) -> Result<(), DatasetError> {
        let row = self.manifest.positions * self.manifest.channels;
        assert_eq!(values.len() % row, 0, "whole grids only");
        let mut bytes = Vec::with_capacity(values.len() * 2);
        for v in values {
            bytes.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
        }
        self.out
            .write_all(&bytes)
            .map_err(|e| DatasetError::io(&self.tmp, e))?;
        self.rows += values.len() / row;
        Ok(())
    }

    /// Appends a row of zeros for a picture that could not be decoded, and records why.
    pub fn push_unreadable(&mut self, reason: String) -> Result<(), DatasetError> {
        let zeros = vec![0.0; self.manifest.positions * self.manifest.channels];
        self.manifest.unreadable.push((self.rows, reason));
        self.push(&zeros)
    }

    /// Completes the cache and opens it.
    pub fn finish(mut self) -> Result<FeatureCache, DatasetError> {
        assert_eq!(
            self.rows, self.manifest.key.images,
            "a cache gets one row per picture"
        );
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().sync_all())
            .map_err(|e| DatasetError::io(&self.tmp, e))?;
        let features = self.dir.join(FEATURES);
        std::fs::rename(&self.tmp, &features).map_err(|e| DatasetError::io(&features, e))?;
        let manifest = self.dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(&self.manifest).expect("a manifest serialises");
        crate::files::write_file(&manifest, &json).map_err(|e| DatasetError::io(&manifest, e))?;
        FeatureCache::open(&self.dir, &self.manifest.key).ok_or_else(|| DatasetError::NotFound {
            dir: self.dir.clone(),
            what: "the feature cache just written cannot be read back".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(weights: &str) -> CacheKey {
        CacheKey {
            encoder: serde_json::json!({"small_cnn": {"image_size": 16}}),
            weights_sha256: weights.into(),
            resize: Resize {
                size: 16,
                center_crop: true,
            },
            images_sha256: "abc".into(),
            images: 3,
        }
    }

    #[test]
    fn rows_round_trip_in_half_precision_and_stale_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("feature-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut writer = FeatureCacheWriter::create(&dir, key("w1"), 2, 2).unwrap();
        writer
            .push(&[0.5, -1.25, 3.0, 1e-3, 7.0, 8.0, 9.0, 10.0])
            .unwrap();
        // Not complete yet: nothing to open.
        assert!(FeatureCache::open(&dir, &key("w1")).is_none());
        writer
            .push_unreadable("broken.jpg: truncated".into())
            .unwrap();
        let cache = writer.finish().unwrap();
        assert_eq!(
            (cache.len(), cache.grid(), cache.bytes_per_image()),
            (3, (2, 2), 8)
        );
        let mut row = Vec::new();
        cache.read_row(0, &mut row);
        assert_eq!(row[..3], [0.5, -1.25, 3.0]);
        assert!((row[3] - 1e-3).abs() < 1e-6);
        row.clear();
        cache.read_row(2, &mut row);
        assert_eq!(row, [0.0; 4]);
        assert_eq!(
            cache.unreadable(),
            [(2, "broken.jpg: truncated".to_string())]
        );
        assert!(FeatureCache::open(&dir, &key("w1")).is_some());
        assert!(FeatureCache::open(&dir, &key("w2")).is_none());
        // A truncated file is refused too.
        let features = dir.join(FEATURES);
        let bytes = std::fs::read(&features).unwrap();
        std::fs::write(&features, &bytes[..10]).unwrap();
        assert!(FeatureCache::open(&dir, &key("w1")).is_none());
        assert_ne!(key("w1").folder_name("f8k"), key("w2").folder_name("f8k"));
    }
}

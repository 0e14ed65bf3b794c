//! Decoding a dataset's pictures in parallel on every core, resized for the encoder, with a
//! progress bar and a count of what could not be read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ::image::imageops::{self, FilterType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::image::{load_rgb, ImageLoadError, RgbImage};
use crate::progress::Progress;

/// How a picture of any size becomes the encoder's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    /// Side of the square the encoder takes, in pixels (224 for ResNet, 299 for Inception v3).
    pub size: usize,
    /// Scale the shorter side to `size * 256 / 224` and cut the centre square (torchvision's
    /// evaluation transform); when false, squash the whole picture to `size` x `size`.
    pub center_crop: bool,
}

/// How pictures are fitted to the square input, as runs, flags and `features` name it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Scale the shorter side to 256/224 of the input side and cut the centre square
    /// (torchvision's evaluation transform).
    #[default]
    Crop,
    /// Squash the whole picture to the input side.
    Squash,
}

crate::named_values!(ResizeMode: Crop = "crop" | "center-crop", Squash = "squash" | "plain");

impl ResizeMode {
    /// This fitting to `size` x `size`.
    pub fn to_size(self, size: usize) -> Resize {
        Resize {
            size,
            center_crop: self == ResizeMode::Crop,
        }
    }
}

impl Resize {
    /// The fitting this resize does (the inverse of [`ResizeMode::to_size`]).
    pub fn mode(&self) -> ResizeMode {
        match self.center_crop {
            true => ResizeMode::Crop,
            false => ResizeMode::Squash,
        }
    }

    /// The encoder's input made from `image`.
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        let size = self.size as u32;
        if image.width() == size && image.height() == size {
            return image.clone();
        }
        if !self.center_crop {
            return imageops::resize(image, size, size, FilterType::Triangle);
        }
        let short = (self.size * 256).div_ceil(224) as u32;
        let (w, h) = (image.width().max(1), image.height().max(1));
        let (nw, nh) = if w <= h {
            (
                short,
                ((h as u64 * short as u64) / w as u64).max(size as u64) as u32,
            )
        } else {
            (
                ((w as u64 * short as u64) / h as u64).max(size as u64) as u32,
                short,
            )
        };
        let scaled = imageops::resize(image, nw, nh, FilterType::Triangle);
        imageops::crop_imm(&scaled, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
    }
}

/// What decoding a set of pictures gave.
#[derive(Debug)]
pub struct Decoded {
    /// The pictures resized for the encoder, `None` where decoding failed (or when they were
    /// not kept).
    pub images: Vec<Option<Arc<RgbImage>>>,
    /// The failures, in input order.
    pub errors: Vec<ImageLoadError>,
    /// Pictures decoded per second of wall time.
    pub images_per_second: f64,
}

/// Decodes and resizes every file of `paths` on all cores (rayon), with its progress on
/// stderr when `progress` is true. With `keep` false the pictures are only checked (all come
/// back `None`; the errors are still listed).
pub fn decode_all(paths: &[PathBuf], resize: &Resize, progress: bool, keep: bool) -> Decoded {
    let bar = Progress::new("decoding", paths.len(), progress);
    let started = Instant::now();
    let results: Vec<Result<Option<RgbImage>, ImageLoadError>> = paths
        .par_iter()
        .map(|path| {
            let image = load_rgb(path).map(|image| keep.then(|| resize.apply(&image)));
            bar.inc(1);
            image
        })
        .collect();
    bar.finish();
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let mut images = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(image) => images.push(image.map(Arc::new)),
            Err(e) => {
                images.push(None);
                errors.push(e);
            }
        }
    }
    Decoded {
        images,
        errors,
        images_per_second: paths.len() as f64 / seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_knows_the_mode_it_was_made_from() {
        for mode in [ResizeMode::Crop, ResizeMode::Squash] {
            assert_eq!(mode.to_size(320).mode(), mode);
        }
    }

    #[test]
    fn center_crop_keeps_the_middle_and_plain_resize_squashes() {
        // 40x20: left half red, right half blue, a green stripe in the middle columns.
        let mut image = RgbImage::new(40, 20);
        for (x, _, p) in image.enumerate_pixels_mut() {
            *p = ::image::Rgb(if (18..22).contains(&x) {
                [0, 255, 0]
            } else if x < 20 {
                [255, 0, 0]
            } else {
                [0, 0, 255]
            });
        }
        let crop = Resize {
            size: 14,
            center_crop: true,
        }
        .apply(&image);
        assert_eq!(crop.dimensions(), (14, 14));
        // The crop is the centre 16x16 of a 32x16 scaling: red edge left, blue edge right.
        assert!(crop.get_pixel(0, 7)[0] > 200 && crop.get_pixel(13, 7)[2] > 200);
        let squash = Resize {
            size: 10,
            center_crop: false,
        }
        .apply(&image);
        assert_eq!(squash.dimensions(), (10, 10));
    }

    #[test]
    fn failures_are_counted_and_named() {
        let dir = std::env::temp_dir().join(format!("decode-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.png");
        RgbImage::new(30, 20).save(&good).unwrap();
        let truncated = dir.join("truncated.png");
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let resize = Resize {
            size: 8,
            center_crop: true,
        };
        let paths = [good, truncated, dir.join("missing.jpg")];
        let checked = decode_all(&paths, &resize, false, false);
        assert!(checked.images.iter().all(Option::is_none));
        assert_eq!(checked.errors.len(), 2);
        let decoded = decode_all(&paths, &resize, false, true);
        assert_eq!(decoded.images[0].as_ref().unwrap().dimensions(), (8, 8));
        assert!(decoded.images[1].is_none() && decoded.images[2].is_none());
        assert_eq!(decoded.errors.len(), 2);
        assert!(decoded.errors[0].to_string().contains("truncated.png"));
    }
}

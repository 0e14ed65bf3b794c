//! Image decoding and the preprocessing that turns a picture into the encoder's input.

use std::path::Path;

pub use ::image::RgbImage;

/// ImageNet channel means (RGB, on a 0..1 scale): every encoder here is fed images normalised
/// with them, so that pretrained and from-scratch encoders share one pipeline.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, on a 0..1 scale).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why a picture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read the file: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The bytes are not a picture that we can decode.
    #[error("{path}: not a readable image (JPEG or PNG expected): {reason}")]
    Decode {
        /// The file.
        path: String,
        /// The decoder's reason.
        reason: String,
    },
}

impl ImageLoadError {
    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            ImageLoadError::Io { path, .. } | ImageLoadError::Decode { path, .. } => {
                Path::new(path)
            }
        }
    }
}

/// Reads a JPEG or PNG file (grayscale, alpha and 16-bit included) as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let bytes = std::fs::read(path).map_err(|source| ImageLoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let decoded = ::image::load_from_memory(&bytes).map_err(|e| ImageLoadError::Decode {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(decoded.to_rgb8())
}

/// `image` mirrored left-right (train-time augmentation).
pub fn hflip(image: &RgbImage) -> RgbImage {
    ::image::imageops::flip_horizontal(image)
}

/// Resizes `image` to `size` x `size` (when it is not already) and returns it as a
/// channel-first `[3, size, size]` buffer normalised with the ImageNet mean and std.
pub fn to_normalized_chw(image: &RgbImage, size: usize) -> Vec<f32> {
    let resized;
    let image = if image.width() as usize == size && image.height() as usize == size {
        image
    } else {
        resized = ::image::imageops::resize(
            image,
            size as u32,
            size as u32,
            ::image::imageops::FilterType::Triangle,
        );
        &resized
    };
    let plane = size * size;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_channel_first_and_resizes() {
        let mut img = RgbImage::new(4, 4);
        img.put_pixel(1, 0, ::image::Rgb([255, 0, 0]));
        let out = to_normalized_chw(&img, 4);
        assert_eq!(out.len(), 48);
        let red_at_1 = out[1];
        assert!((red_at_1 - (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]).abs() < 1e-6);
        assert!((out[16 + 1] + IMAGENET_MEAN[1] / IMAGENET_STD[1]).abs() < 1e-6);
        assert_eq!(to_normalized_chw(&img, 2).len(), 12);
    }

    #[test]
    fn errors_name_the_file() {
        let missing = Path::new("/nonexistent/picture.png");
        let err = load_rgb(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/picture.png"), "{err}");
        let dir = std::env::temp_dir().join(format!("img-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.png");
        std::fs::write(&text, "hello").unwrap();
        let err = load_rgb(&text).unwrap_err().to_string();
        assert!(
            err.contains("notes.png") && err.contains("not a readable image"),
            "{err}"
        );
    }
}

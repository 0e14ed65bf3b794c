//! Image decoding and the preprocessing that turns a picture into the encoder's input.

use std::io::Read;
use std::path::Path;

pub use ::image::RgbImage;

/// ImageNet channel means (RGB, on a 0..1 scale): every encoder here is fed images normalised
/// with them, so that pretrained and from-scratch encoders share one pipeline.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, on a 0..1 scale).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The picture formats decoded, for messages.
pub const FORMATS: &str = "JPEG, PNG, WebP, BMP, TIFF or GIF";

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
    #[error("{path}: not a readable image ({FORMATS} expected): {reason}")]
    Decode {
        /// The file.
        path: String,
        /// The decoder's reason.
        reason: String,
    },
    /// The path is not a regular file (a folder, a device, a FIFO, a socket).
    #[error(
        "{path}: not a picture file (a folder, a device or a pipe): give the path of a picture"
    )]
    NotAFile {
        /// The path.
        path: String,
    },
    /// The picture is larger than the limits allow: refused before it is decoded.
    #[error("{path}: {reason}")]
    TooLarge {
        /// The file.
        path: String,
        /// Which limit, and by how much.
        reason: String,
    },
}

/// The largest picture that is decoded: a file or upload of more bytes, or a picture that
/// declares more pixels in its header, is refused before any pixel is decoded (a small PNG
/// can declare 16000 x 16000 pixels and decode to a gigabyte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureLimits {
    /// Most bytes of the file.
    pub max_bytes: u64,
    /// Most pixels (width x height).
    pub max_pixels: u64,
}

impl Default for PictureLimits {
    /// 64 MiB and 100 million pixels: above any camera's photo, far below what would exhaust
    /// memory when a few are decoded at once.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_pixels: 100_000_000,
        }
    }
}

/// Decodes a picture held in memory ([`FORMATS`]; grayscale, alpha and 16-bit included, a
/// GIF's first frame) as 8-bit RGB,
/// within `limits`; `name` names it in errors.
pub fn decode_rgb(
    bytes: &[u8],
    name: &str,
    limits: PictureLimits,
) -> Result<RgbImage, ImageLoadError> {
    let too_large = |reason: String| ImageLoadError::TooLarge {
        path: name.to_string(),
        reason,
    };
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large(format!(
            "{} bytes is over the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let undecodable = |e: &dyn std::fmt::Display| ImageLoadError::Decode {
        path: name.to_string(),
        reason: e.to_string(),
    };
    let reader = || {
        ::image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| undecodable(&e))
    };
    if let Some(reason) = jpeg_cut_short(bytes) {
        return Err(undecodable(&reason));
    }
    let (width, height) = reader()?.into_dimensions().map_err(|e| undecodable(&e))?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(too_large(format!(
            "{width} x {height} pixels is over the limit of {} pixels",
            limits.max_pixels
        )));
    }
    let decoded = reader()?.decode().map_err(|e| undecodable(&e))?;
    Ok(decoded.to_rgb8())
}

/// Why a JPEG file ends before its picture does, if it does. The `image` crate decodes a JPEG
/// cut short without an error, filling in the rest of the picture; PIL refuses one. A
/// complete JPEG ends its last scan (the last start-of-scan marker `FF DA`: embedded thumbnails
/// come before the picture's own scans) with an end-of-image marker `FF D9`; inside a scan a
/// data byte `FF` is always followed by `00` or a restart marker, so the pair cannot be data.
fn jpeg_cut_short(bytes: &[u8]) -> Option<&'static str> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let marker = |code: u8| move |pair: &[u8]| pair == [0xFF, code];
    let Some(last_scan) = bytes.windows(2).rposition(marker(0xDA)) else {
        return Some("the file is cut short: it ends before the picture's data starts");
    };
    match bytes[last_scan..].windows(2).any(marker(0xD9)) {
        true => None,
        false => Some("the file is cut short: it ends in the middle of the picture's data"),
    }
}

impl ImageLoadError {
    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            ImageLoadError::Io { path, .. }
            | ImageLoadError::NotAFile { path }
            | ImageLoadError::Decode { path, .. }
            | ImageLoadError::TooLarge { path, .. } => Path::new(path),
        }
    }
}

/// Reads a picture file ([`FORMATS`]; grayscale, alpha and 16-bit included) as 8-bit RGB, within the
/// default [`PictureLimits`].
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageLoadError> {
    load_rgb_within(path, PictureLimits::default())
}

/// [`load_rgb`] within `limits`.
pub fn load_rgb_within(path: &Path, limits: PictureLimits) -> Result<RgbImage, ImageLoadError> {
    let name = path.display().to_string();
    let io = |source| ImageLoadError::Io {
        path: name.clone(),
        source,
    };
    // A device or a FIFO can have no end (`/dev/zero`) or no writer: refused by what it is,
    // before it is opened; a file is read to at most one byte past the limit, whatever its
    // metadata says.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ImageLoadError::NotAFile { path: name });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len().min(limits.max_bytes) as usize);
    file.take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(ImageLoadError::TooLarge {
            path: name,
            reason: format!("the file is over the limit of {} bytes", limits.max_bytes),
        });
    }
    decode_rgb(&bytes, &name, limits)
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

    fn jpeg_bytes() -> Vec<u8> {
        let picture =
            RgbImage::from_fn(64, 48, |x, y| ::image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut bytes = Vec::new();
        picture
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                ::image::ImageFormat::Jpeg,
            )
            .unwrap();
        bytes
    }

    #[test]
    fn a_jpeg_cut_short_is_refused_as_pil_refuses_it_and_a_whole_one_decodes() {
        let whole = jpeg_bytes();
        assert_eq!(
            decode_rgb(&whole, "whole.jpg", PictureLimits::default())
                .unwrap()
                .dimensions(),
            (64, 48)
        );
        // Bytes after the end-of-image marker (some cameras append data) are fine.
        let mut padded = whole.clone();
        padded.extend([0u8; 100]);
        assert!(decode_rgb(&padded, "padded.jpg", PictureLimits::default()).is_ok());
        for keep in [whole.len() - 2, whole.len() * 2 / 3, 400, 40] {
            let err = decode_rgb(&whole[..keep], "cut.jpg", PictureLimits::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("cut.jpg: ") && err.contains("cut short"),
                "{keep}: {err}"
            );
        }
    }

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

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        RgbImage::new(width, height)
            .write_to(&mut bytes, ::image::ImageFormat::Png)
            .unwrap();
        bytes.into_inner()
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_small_file_that_declares_a_huge_picture_is_refused_before_decoding() {
        // A 1x1 PNG whose header (IHDR, with its checksum) claims 16000 x 16000 pixels: it
        // would decode to 768 MB.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&16000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&16000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_rgb(&bomb, "bomb.png", PictureLimits::default()).unwrap_err();
        assert!(matches!(err, ImageLoadError::TooLarge { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "bomb.png: 16000 x 16000 pixels is over the limit of 100000000 pixels"
        );
    }

    #[test]
    fn pictures_within_the_limits_decode_and_others_are_refused_by_name() {
        let bytes = png(8, 4);
        let limits = PictureLimits {
            max_bytes: bytes.len() as u64,
            max_pixels: 32,
        };
        assert_eq!(
            decode_rgb(&bytes, "ok.png", limits).unwrap().dimensions(),
            (8, 4)
        );
        let fewer_pixels = PictureLimits {
            max_pixels: 31,
            ..limits
        };
        let err = decode_rgb(&bytes, "big.png", fewer_pixels)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "big.png: 8 x 4 pixels is over the limit of 31 pixels");
        let fewer_bytes = PictureLimits {
            max_bytes: bytes.len() as u64 - 1,
            ..limits
        };
        let err = decode_rgb(&bytes, "big.png", fewer_bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("big.png: ") && err.contains("bytes is over the limit"),
            "{err}"
        );
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

    #[test]
    fn devices_pipes_and_folders_are_refused_by_name_and_a_file_is_read_to_its_limit_only() {
        for path in ["/dev/zero", "/dev/urandom", "/"] {
            let err = load_rgb(Path::new(path)).unwrap_err();
            assert!(matches!(err, ImageLoadError::NotAFile { .. }), "{err}");
            assert!(err
                .to_string()
                .starts_with(&format!("{path}: not a picture file")));
        }
        let dir = std::env::temp_dir().join(format!("img-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A FIFO with no writer: opening it would wait for ever.
        let fifo = dir.join("photo.jpg");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let err = load_rgb(&fifo).unwrap_err();
        assert!(matches!(err, ImageLoadError::NotAFile { .. }), "{err}");
        let big = dir.join("big.png");
        std::fs::write(&big, vec![0u8; 1000]).unwrap();
        let limits = PictureLimits {
            max_bytes: 100,
            max_pixels: 100,
        };
        let err = load_rgb_within(&big, limits).unwrap_err().to_string();
        assert!(
            err.ends_with("big.png: the file is over the limit of 100 bytes"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn webp_bmp_tiff_and_gif_pictures_decode_as_png_does() {
        let picture =
            ::image::RgbImage::from_fn(6, 4, |x, y| ::image::Rgb([40 * x as u8, 60 * y as u8, 90]));
        for format in [
            ::image::ImageFormat::WebP,
            ::image::ImageFormat::Bmp,
            ::image::ImageFormat::Tiff,
            ::image::ImageFormat::Gif,
        ] {
            let mut bytes = std::io::Cursor::new(Vec::new());
            picture.write_to(&mut bytes, format).unwrap();
            let decoded = decode_rgb(bytes.get_ref(), "p", PictureLimits::default()).unwrap();
            assert_eq!(decoded.dimensions(), (6, 4), "{format:?}");
            if format != ::image::ImageFormat::Gif {
                // Lossless formats: every pixel back (GIF's palette may round).
                assert_eq!(decoded, picture, "{format:?}");
            }
        }
    }
}

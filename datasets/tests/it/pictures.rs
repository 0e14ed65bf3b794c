//! Pictures as real datasets hold them (CMYK and grayscale JPEGs, progressive JPEGs, PNGs
//! with alpha or 16 bits per channel) all decode to the RGB the encoder expects. The files are
//! made by `fixtures/make_pictures.py` with Pillow.

use std::path::Path;

use captioner_datasets::image::load_rgb;

fn load(name: &str) -> captioner_datasets::image::RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    load_rgb(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts a left-red, right-blue 16x12 picture (JPEG colours are approximate).
fn assert_red_blue(name: &str) {
    let image = load(name);
    assert_eq!(image.dimensions(), (16, 12), "{name}");
    let left = image.get_pixel(2, 6);
    let right = image.get_pixel(13, 6);
    assert!(left[0] > 200 && left[2] < 60, "{name}: left {left:?}");
    assert!(right[2] > 200 && right[0] < 60, "{name}: right {right:?}");
}

#[test]
fn cmyk_jpeg_decodes_to_rgb() {
    assert_red_blue("cmyk.jpg");
}

#[test]
fn progressive_jpeg_decodes() {
    assert_red_blue("progressive.jpg");
}

#[test]
fn alpha_png_drops_the_alpha() {
    assert_red_blue("alpha.png");
}

#[test]
fn grayscale_jpeg_becomes_three_equal_channels() {
    let image = load("gray.jpg");
    let p = image.get_pixel(2, 6);
    assert_eq!((p[0], p[0]), (p[1], p[2]));
    // Red is brighter than blue in luma.
    assert!(p[0] > image.get_pixel(13, 6)[0] + 20);
}

#[test]
fn sixteen_bit_png_scales_to_eight_bits() {
    let image = load("gray16.png");
    assert_eq!(image.get_pixel(0, 0)[0], 0);
    assert_eq!(image.get_pixel(15, 0)[0], 255);
    let mid = image.get_pixel(8, 0)[0];
    assert!((130..=145).contains(&mid), "{mid}");
}

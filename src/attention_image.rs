//! The picture of where the model looked, word by word, as Figure 3 of "Show, Attend and
//! Tell" draws it: the picture once per generated word, that word's attention map upsampled
//! smoothly over it, the word written above the panel.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// The font of the words: Go Regular (BSD licence, `assets/fonts/LICENSE`).
const FONT: &[u8] = include_bytes!("../assets/fonts/Go-Regular.ttf");

/// Panels a row of the grid holds at most.
pub const COLUMNS: u32 = 5;
/// Height of the band above each panel that holds its word, in pixels.
pub const LABEL_HEIGHT: u32 = 28;
/// White space between panels and around the grid, in pixels.
pub const GAP: u32 = 6;
/// Size of the words, in pixels.
const TEXT_SIZE: f32 = 20.0;
/// Brightness of the picture where the model did not look at all: attended parts keep
/// theirs, the rest fades towards this fraction of it.
const UNATTENDED: f32 = 0.2;

/// Why an attention picture cannot be drawn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttentionImageError {
    /// The maps are not square grids.
    #[error("an attention map of {0} positions is not a square grid")]
    NotSquare(usize),
    /// Words and maps do not pair up.
    #[error("{words} words but {maps} attention maps")]
    Mismatch {
        /// Words given.
        words: usize,
        /// Maps given.
        maps: usize,
    },
}

/// Draws the attention grid of one caption: panel 0 is `picture` as the model saw it (the
/// prepared, square input), labelled `first_label`; panel `i` is `picture` under the
/// attention map `alphas[i - 1]` (one weight per grid position, row-major) with `words[i - 1]`
/// above it. Up to [`COLUMNS`] panels a row, each as large as `picture`.
pub fn attention_grid(
    picture: &RgbImage,
    first_label: &str,
    words: &[&str],
    alphas: &[Vec<f32>],
) -> Result<RgbImage, AttentionImageError> {
    if words.len() != alphas.len() {
        return Err(AttentionImageError::Mismatch {
            words: words.len(),
            maps: alphas.len(),
        });
    }
    let panels = words.len() as u32 + 1;
    let (columns, rows) = grid_shape(panels);
    let (w, h) = picture.dimensions();
    let mut grid = RgbImage::from_pixel(
        GAP + columns * (w + GAP),
        GAP + rows * (LABEL_HEIGHT + h + GAP),
        Rgb([255, 255, 255]),
    );
    let font = FontRef::try_from_slice(FONT).expect("the shipped font is a TrueType font");
    for panel in 0..panels {
        let x = GAP + (panel % columns) * (w + GAP);
        let y = GAP + (panel / columns) * (LABEL_HEIGHT + h + GAP);
        let (label, shown) = match panel {
            0 => (first_label, picture.clone()),
            _ => {
                let i = panel as usize - 1;
                (words[i], blend(picture, &upsample(&alphas[i], w, h)?))
            }
        };
        imageops::replace(&mut grid, &shown, x.into(), (y + LABEL_HEIGHT).into());
        draw_label(&mut grid, &font, label, x, y, w);
    }
    Ok(grid)
}

/// Columns and rows of a grid of `panels` panels.
pub fn grid_shape(panels: u32) -> (u32, u32) {
    let columns = panels.clamp(1, COLUMNS);
    (columns, panels.div_ceil(columns))
}

/// The map `alpha` (a square grid, row-major) scaled to 0..1 by its largest weight and
/// resized smoothly (Catmull-Rom) to `width` x `height`.
fn upsample(
    alpha: &[f32],
    width: u32,
    height: u32,
) -> Result<ImageBuffer<Luma<f32>, Vec<f32>>, AttentionImageError> {
    let side = (alpha.len() as f64).sqrt().round() as u32;
    if side == 0 || (side * side) as usize != alpha.len() {
        return Err(AttentionImageError::NotSquare(alpha.len()));
    }
    let top = alpha.iter().copied().fold(0.0f32, f32::max);
    let scaled: Vec<f32> = alpha
        .iter()
        .map(|&a| if top > 0.0 { a / top } else { 0.0 })
        .collect();
    let map = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(side, side, scaled)
        .expect("side * side weights");
    Ok(imageops::resize(
        &map,
        width,
        height,
        FilterType::CatmullRom,
    ))
}

/// `picture` lit by `map` (0..1, its size): full brightness where the map is 1, down to
/// [`UNATTENDED`] where it is 0.
fn blend(picture: &RgbImage, map: &ImageBuffer<Luma<f32>, Vec<f32>>) -> RgbImage {
    let mut out = picture.clone();
    for (pixel, weight) in out.pixels_mut().zip(map.pixels()) {
        let light = UNATTENDED + (1.0 - UNATTENDED) * weight.0[0].clamp(0.0, 1.0);
        for c in pixel.0.iter_mut() {
            *c = (f32::from(*c) * light).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Writes `text` in black, centred in the band of width `width` whose top-left corner is
/// (`x`, `y`), made smaller when it would not fit.
fn draw_label(grid: &mut RgbImage, font: &FontRef, text: &str, x: u32, y: u32, width: u32) {
    let mut size = TEXT_SIZE;
    let mut advance = text_width(font, text, size);
    let room = width.saturating_sub(4) as f32;
    if advance > room && advance > 0.0 {
        size *= room / advance;
        advance = text_width(font, text, size);
    }
    let scaled = font.as_scaled(PxScale::from(size));
    let baseline = y as f32 + (LABEL_HEIGHT as f32 + scaled.ascent() + scaled.descent()) / 2.0;
    let mut caret = x as f32 + (width as f32 - advance) / 2.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            caret += scaled.kern(previous, id);
        }
        let glyph = id.with_scale_and_position(size, ab_glyph::point(caret, baseline));
        caret += scaled.h_advance(id);
        previous = Some(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let px = bounds.min.x as i64 + i64::from(gx);
            let py = bounds.min.y as i64 + i64::from(gy);
            if px < 0 || py < 0 || px >= grid.width() as i64 || py >= grid.height() as i64 {
                return;
            }
            let pixel = grid.get_pixel_mut(px as u32, py as u32);
            let keep = 1.0 - coverage.clamp(0.0, 1.0);
            for c in pixel.0.iter_mut() {
                *c = (f32::from(*c) * keep).round() as u8;
            }
        });
    }
}

/// Width of `text` at `size` pixels.
fn text_width(font: &FontRef, text: &str, size: f32) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut width = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            width += scaled.kern(previous, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_picture(side: u32) -> RgbImage {
        RgbImage::from_pixel(side, side, Rgb([200, 200, 200]))
    }

    /// A 3x3 map that looks only at `position`.
    fn looking_at(position: usize) -> Vec<f32> {
        let mut alpha = vec![0.0; 9];
        alpha[position] = 1.0;
        alpha
    }

    #[test]
    fn the_grid_has_a_panel_for_the_picture_and_one_per_word_five_a_row() {
        let picture = gray_picture(30);
        let words = ["a", "dog", "runs", "on", "the", "grass"];
        let alphas: Vec<Vec<f32>> = (0..6).map(|i| looking_at(i % 9)).collect();
        let grid = attention_grid(&picture, "picture", &words, &alphas).unwrap();
        // 7 panels: 5 in the first row, 2 in the second.
        assert_eq!(grid_shape(7), (5, 2));
        assert_eq!(grid.width(), GAP + 5 * (30 + GAP));
        assert_eq!(grid.height(), GAP + 2 * (LABEL_HEIGHT + 30 + GAP));
        assert_eq!(grid_shape(2), (2, 1));
        assert_eq!(grid_shape(10), (5, 2));
        assert_eq!(grid_shape(11), (5, 3));
    }

    #[test]
    fn a_panel_is_brightest_where_its_word_looked_and_dim_elsewhere() {
        let picture = gray_picture(60);
        // The first word looks at the top-left cell, the second at the bottom-right one.
        let grid =
            attention_grid(&picture, "", &["x", "y"], &[looking_at(0), looking_at(8)]).unwrap();
        let panel = |i: u32, px: u32, py: u32| {
            grid.get_pixel(GAP + i * (60 + GAP) + px, GAP + LABEL_HEIGHT + py)
                .0[0]
        };
        // Panel 0 is the picture itself.
        assert_eq!(panel(0, 5, 5), 200);
        assert_eq!(panel(0, 55, 55), 200);
        assert!(panel(1, 5, 5) > 190, "{}", panel(1, 5, 5));
        assert!(panel(1, 55, 55) < 60, "{}", panel(1, 55, 55));
        assert!(panel(2, 55, 55) > 190, "{}", panel(2, 55, 55));
        assert!(panel(2, 5, 5) < 60, "{}", panel(2, 5, 5));
        // Smooth: between the two, the light falls off gradually (Catmull-Rom rings by a
        // level or two where it flattens out).
        let across: Vec<u8> = (5..55).step_by(5).map(|p| panel(1, p, p)).collect();
        assert!(across.windows(2).all(|w| w[0] + 2 >= w[1]), "{across:?}");
        assert!(across.iter().any(|&v| v > 60 && v < 190), "{across:?}");
    }

    #[test]
    fn each_word_is_written_in_dark_ink_in_the_band_above_its_panel() {
        let picture = gray_picture(80);
        let grid =
            attention_grid(&picture, "", &["dog", ""], &[looking_at(4), looking_at(4)]).unwrap();
        let ink = |panel: u32| {
            let x0 = GAP + panel * (80 + GAP);
            (x0..x0 + 80)
                .flat_map(|x| (GAP..GAP + LABEL_HEIGHT).map(move |y| (x, y)))
                .filter(|&(x, y)| grid.get_pixel(x, y).0[0] < 100)
                .count()
        };
        assert_eq!(ink(0), 0, "an empty label draws nothing");
        assert!(ink(1) > 30, "the word \"dog\" left {} dark pixels", ink(1));
        assert_eq!(ink(2), 0);
    }

    #[test]
    fn a_long_word_is_shrunk_to_fit_its_panel() {
        let picture = gray_picture(40);
        let word = "skateboarding";
        let grid = attention_grid(&picture, "", &[word], &[looking_at(4)]).unwrap();
        assert!(text_width(&FontRef::try_from_slice(FONT).unwrap(), word, TEXT_SIZE) > 40.0);
        // No ink spills into the gaps beside the second panel's band.
        let x0 = GAP + (40 + GAP);
        for y in GAP..GAP + LABEL_HEIGHT {
            for x in (x0 - GAP..x0).chain(x0 + 40..(x0 + 40 + GAP).min(grid.width())) {
                assert!(grid.get_pixel(x, y).0[0] > 200, "ink at ({x}, {y})");
            }
        }
    }

    #[test]
    fn maps_that_are_not_square_grids_or_do_not_pair_with_the_words_are_refused() {
        let picture = gray_picture(20);
        assert_eq!(
            attention_grid(&picture, "", &["a"], &[vec![0.5; 8]]),
            Err(AttentionImageError::NotSquare(8))
        );
        assert_eq!(
            attention_grid(&picture, "", &["a", "b"], &[looking_at(0)]),
            Err(AttentionImageError::Mismatch { words: 2, maps: 1 })
        );
    }
}

//! Picture loading: JPEG and PNG decoding within limits, then the preparation every encoder's
//! input goes through (resizing to the encoder's size, ImageNet normalisation, flipping).

#![no_main]

use captioner_datasets::image::{decode_rgb, hflip, to_normalized_chw, PictureLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Tighter than the default limits, so that each run stays fast; the checks are the same.
    let limits = PictureLimits {
        max_bytes: 1 << 20,
        max_pixels: 1 << 20,
    };
    if let Ok(image) = decode_rgb(data, "fuzz", limits) {
        assert!(u64::from(image.width()) * u64::from(image.height()) <= limits.max_pixels);
        let input = to_normalized_chw(&image, 16);
        assert_eq!(input.len(), 3 * 16 * 16);
        assert!(input.iter().all(|v| v.is_finite()));
        let flipped = hflip(&image);
        assert_eq!(flipped.dimensions(), image.dimensions());
    }
});

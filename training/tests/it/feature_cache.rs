//! The feature cache gives the decoder what the encoder would have given it, row for row, and
//! is never reused once the encoder's weights or the pictures change.

use std::path::PathBuf;
use std::sync::Arc;

use burn::backend::NdArray;
use burn::data::dataloader::batcher::Batcher;
use captioner_datasets::decode::Resize;
use captioner_datasets::image::RgbImage;
use captioner_datasets::{CaptionItem, ItemImage};
use captioner_model::{CaptionerConfig, DecoderConfig, EncoderConfig, SmallCnnConfig};
use captioner_training::feature_cache::{weights_sha256, CacheEncoder};
use captioner_training::CaptionBatcher;

const SIZE: usize = 16;

fn pictures(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..5u8)
        .map(|i| {
            let path = dir.join(format!("{i}.png"));
            let image = RgbImage::from_fn(20 + i as u32, 18, |x, y| {
                ::image::Rgb([x as u8 * 9, y as u8 * 11, i * 40])
            });
            image.save(&path).unwrap();
            path
        })
        .collect()
}

#[test]
fn cached_features_match_the_encoder_and_stale_caches_are_rebuilt() {
    let root = std::env::temp_dir().join(format!("captioner-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut files = pictures(&root.join("pictures"));
    std::fs::write(root.join("pictures/broken.png"), b"\x89PNG broken").unwrap();
    files.insert(2, root.join("pictures/broken.png"));

    let device = Default::default();
    let encoder_config = EncoderConfig::SmallCnn(SmallCnnConfig::new().with_image_size(SIZE));
    let config = CaptionerConfig::new(
        encoder_config.clone(),
        DecoderConfig::new(12, encoder_config.feature_dim()).with_dropout(0.0),
    );
    let model = config.init::<NdArray>(&device);
    let resize = Resize {
        size: SIZE,
        center_crop: true,
    };
    let cache_encoder = CacheEncoder {
        encoder: &model.encoder,
        config: &encoder_config,
        resize,
        device,
    };
    let cache = cache_encoder
        .open_or_build(&files, &root.join("cache"), "test")
        .unwrap();
    assert_eq!(cache.len(), 6);
    assert_eq!(cache.unreadable().len(), 1);
    assert_eq!(cache.unreadable()[0].0, 2);
    assert!(cache.unreadable()[0].1.contains("broken.png"));

    // The same batch through pixels and through the cache: same loss, up to half precision.
    let tokens = vec![vec![1, 5, 6, 2], vec![1, 7, 2], vec![1, 8, 9, 10, 2]];
    let rows = [0usize, 3, 5];
    let decoded: Vec<_> = rows
        .iter()
        .map(|&r| Arc::new(resize.apply(&captioner_datasets::image::load_rgb(&files[r]).unwrap())))
        .collect();
    let items = |cached: bool| -> Vec<CaptionItem> {
        rows.iter()
            .zip(&decoded)
            .zip(&tokens)
            .map(|((&row, image), caption)| CaptionItem {
                image_id: row,
                image: if cached {
                    ItemImage::Cached(row)
                } else {
                    ItemImage::Pixels(image.clone())
                },
                captions: vec![caption.clone()],
            })
            .collect()
    };
    let batcher = CaptionBatcher::new(SIZE).with_cache(Some(cache.clone()));
    let from_pixels: f32 = model
        .forward(Batcher::<NdArray, _, _>::batch(
            &batcher,
            items(false),
            &device,
        ))
        .loss
        .into_scalar();
    let from_cache: f32 = model
        .forward(Batcher::<NdArray, _, _>::batch(
            &batcher,
            items(true),
            &device,
        ))
        .loss
        .into_scalar();
    assert!(
        (from_pixels - from_cache).abs() < 2e-3 * from_pixels.abs(),
        "{from_pixels} vs {from_cache}"
    );

    // Reopened as is; rebuilt (another folder) for other weights or a changed picture.
    let again = cache_encoder
        .open_or_build(&files, &root.join("cache"), "test")
        .unwrap();
    assert_eq!(again.dir(), cache.dir());
    let other = config.init::<NdArray>(&device);
    assert_ne!(
        weights_sha256(&other.encoder),
        weights_sha256(&model.encoder)
    );
    let retrained = CacheEncoder {
        encoder: &other.encoder,
        config: &encoder_config,
        resize,
        device,
    }
    .open_or_build(&files, &root.join("cache"), "test")
    .unwrap();
    assert_ne!(retrained.dir(), cache.dir());
    std::thread::sleep(std::time::Duration::from_millis(20));
    RgbImage::new(20, 20).save(&files[0]).unwrap();
    let changed = cache_encoder
        .open_or_build(&files, &root.join("cache"), "test")
        .unwrap();
    assert_ne!(changed.dir(), cache.dir());
    std::fs::remove_dir_all(root).ok();
}

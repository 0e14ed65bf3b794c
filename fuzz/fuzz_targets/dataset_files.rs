//! The dataset readers on a data folder written from the input: Flickr token files with split
//! lists, Kaggle's `captions.txt`, Flickr30k's `results.csv`, Karpathy's JSON and COCO's pair of
//! caption files, each found and read as `train --data-dir` does (`format::detect`, `load`).
//!
//! The first byte picks the layout; the rest is split at NUL bytes into the files it needs.
//! Besides "no panic", every picture a corpus lists must lie inside the data folder and have a
//! caption, and every problem must be printable.

#![no_main]

use std::path::{Path, PathBuf};

use captioner_datasets::format::{detect, load};
use libfuzzer_sys::fuzz_target;

/// Pictures present on disk, so that some names read from the files resolve.
const PICTURES: [&str; 4] = [
    "Flicker8k_Dataset/1.jpg",
    "Flicker8k_Dataset/a b.jpg",
    "train2014/COCO_train2014_000000000001.jpg",
    "val2014/COCO_val2014_000000000002.jpg",
];

/// The files of each layout, relative to the data folder.
const LAYOUTS: [&[&str]; 5] = [
    &[
        "Flickr8k.token.txt",
        "Flickr_8k.trainImages.txt",
        "Flickr_8k.devImages.txt",
    ],
    &["captions.txt"],
    &["flickr30k_images/results.csv"],
    &["dataset_flickr8k.json"],
    &[
        "annotations/captions_train2014.json",
        "annotations/captions_val2014.json",
    ],
];

fn data_folder() -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("captioner-fuzz-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let files = LAYOUTS[choice as usize % LAYOUTS.len()];
    let root = data_folder();
    let _ = std::fs::remove_dir_all(&root);
    for picture in PICTURES {
        let path = root.join(picture);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }
    let mut parts = rest.split(|&b| b == 0);
    for name in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, parts.next().unwrap_or(b"")).unwrap();
    }
    let located = match detect(&root, None, None) {
        Ok(located) => located,
        Err(error) => panic!("the layout written was not found: {error}"),
    };
    match load(&root, &located) {
        Ok(corpus) => {
            for image in &corpus.images {
                assert!(
                    image.path.starts_with(&root) && image.path.is_file(),
                    "{} is outside the data folder or missing",
                    image.path.display()
                );
                assert!(
                    !image.captions.is_empty(),
                    "{} has no caption",
                    image.path.display()
                );
            }
            let _ = corpus.problems.summary(3);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

//! Forward throughput of the pretrained-architecture encoders on the CPU backends: images per
//! second at 224x224 (299 for Inception v3), frozen (no autodiff), random weights.
//!
//! `cargo run --release -p captioner-bench --bin encoder_throughput -- resnet50 resnet101`
//! (flex is timed when the `flex` feature is on, as it is by default). `BATCH` (default 32)
//! and `REPEATS` (default 3) set the batch size and the timed batches.

use std::time::Instant;

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::Distribution;
use captioner_model::{EncoderConfig, EncoderName};

fn config(name: EncoderName) -> EncoderConfig {
    let row = name.row();
    let size = row.native_size.expect("time a pretrained architecture");
    row.config(size, None, &[])
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench<B: Backend>(backend: &str, name: EncoderName) {
    let device = Default::default();
    let (batch, repeats) = (env("BATCH", 32), env("REPEATS", 3));
    let config = config(name);
    let size = config.image_size();
    let encoder = config.init::<B>(&device);
    let images = Tensor::<B, 4>::random([batch, 3, size, size], Distribution::Default, &device);
    let _ = encoder.forward(images.clone()).into_data(); // warm-up
    let started = Instant::now();
    for _ in 0..repeats {
        let _ = encoder.forward(images.clone()).into_data();
    }
    let seconds = started.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "{backend:8} {:13} batch {batch} at {size}x{size}: {:.2} s per batch, {:.1} images/s",
        name.name(),
        seconds,
        batch as f64 / seconds
    );
}

fn main() {
    let names: Vec<EncoderName> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let names = if names.is_empty() {
        vec![EncoderName::ResNet50, EncoderName::ResNet101]
    } else {
        names
    };
    for &name in &names {
        bench::<NdArray>("ndarray", name);
        #[cfg(feature = "flex")]
        bench::<burn::backend::Flex>("flex", name);
    }
}

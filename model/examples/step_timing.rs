//! Times the parts of one training step on the CPU (ndarray): encoder, decoder, whole model.
//! `cargo run --release -p captioner-model --example step_timing` (shapes sizes);
//! `PRESET=photos` for the real-photo defaults (224-pixel input, 14x14 grid, wide decoder);
//! `BATCH=n` for the batch size.

use std::time::Instant;

use burn::backend::{ndarray::NdArrayDevice, Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::Distribution;
use captioner_model::*;

type B = Autodiff<NdArray>;

fn time<F: FnMut()>(name: &str, mut f: F) {
    f();
    let start = Instant::now();
    let n = 5;
    for _ in 0..n {
        f();
    }
    println!(
        "{name}: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}

fn main() {
    let device = NdArrayDevice::Cpu;
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(32);
    let photos = std::env::var("PRESET").is_ok_and(|p| p == "photos");
    // (caption length, vocabulary, image side, CNN stages, embed, attention, hidden)
    let (len, vocab, size, channels, embed, attention, hidden) = if photos {
        (14, 1800, 224, vec![16, 32, 64, 128], 256, 256, 512)
    } else {
        (14, 40, 64, vec![16, 32, 64], 64, 32, 128)
    };
    let encoder = SmallCnnConfig::new()
        .with_image_size(size)
        .with_channels(channels);
    let (positions, dim) = (encoder.grid_positions(), encoder.feature_dim());
    let config = CaptionerConfig::new(
        EncoderConfig::SmallCnn(encoder),
        DecoderConfig::new(vocab, dim)
            .with_embed_dim(embed)
            .with_attention_dim(attention)
            .with_hidden_dim(hidden),
    );
    let model = config.init::<B>(&device);
    let images = Tensor::<B, 4>::random([batch, 3, size, size], Distribution::Default, &device);
    let tokens = Tensor::<B, 2, Int>::random(
        [batch, len],
        Distribution::Uniform(3.0, vocab as f64 - 1.0),
        &device,
    );
    time("encoder fwd", || {
        let _ = model.encoder.forward(images.clone()).into_data();
    });
    time("encoder fwd+bwd", || {
        let _ = model.encoder.forward(images.clone()).sum().backward();
    });
    let features = Tensor::<B, 3>::random([batch, positions, dim], Distribution::Default, &device);
    time("decoder fwd", || {
        let _ = model
            .decoder
            .forward(features.clone(), tokens.clone().narrow(1, 0, len - 1))
            .logits
            .into_data();
    });
    time("decoder fwd+bwd", || {
        let _ = model
            .decoder
            .forward(features.clone(), tokens.clone().narrow(1, 0, len - 1))
            .logits
            .sum()
            .backward();
    });
    time("whole step fwd+bwd", || {
        let image_of_caption = Tensor::arange(0..batch as i64, &device);
        let out = model.forward(CaptionBatch {
            input: EncoderInput::Images(images.clone()),
            tokens: tokens.clone(),
            image_of_caption,
            decode: None,
        });
        let _ = out.loss.backward();
    });
}

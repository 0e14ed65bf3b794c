//! `--fine-tune-encoder`: one optimiser step moves a pretrained ResNet's later layers at the
//! encoder's learning rate and the decoder at the main one, and leaves the stem, the first
//! stage and every batch-norm statistic exactly as loaded.

use std::collections::HashMap;

use burn::backend::{Autodiff, NdArray};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn_store::ModuleSnapshot;
use captioner_model::{
    BackboneConfig, CaptionBatch, Captioner, CaptionerConfig, DecoderConfig, EncoderConfig,
    EncoderInput, ResNetConfig, Shapes,
};
use captioner_training::optimizer::EncoderDecoderAdam;

type Train = Autodiff<NdArray>;

/// Every tensor of `model` by its path (`encoder.layer4.1.conv2.weight`, ...).
fn values(model: &Captioner<Train>) -> HashMap<String, Vec<f32>> {
    model
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.full_path(), t.to_data().unwrap().to_vec().unwrap()))
        .collect()
}

/// Largest change of the tensors whose path passes `select`.
fn largest_change(
    before: &HashMap<String, Vec<f32>>,
    after: &HashMap<String, Vec<f32>>,
    select: impl Fn(&str) -> bool,
) -> f32 {
    let mut seen = 0;
    let change = before
        .iter()
        .filter(|(path, _)| select(path))
        .inspect(|_| seen += 1)
        .flat_map(|(path, old)| old.iter().zip(&after[path]).map(|(a, b)| (a - b).abs()))
        .fold(0f32, f32::max);
    assert!(seen > 0, "no tensor selected");
    change
}

#[test]
fn fine_tuning_moves_later_layers_at_the_encoder_rate_and_nothing_else() {
    let device = Default::default();
    let encoder = ResNetConfig::new(18)
        .with_width(8)
        .with_image_size(64)
        .with_grid(2);
    let decoder = DecoderConfig::new(10, encoder.feature_dim())
        .with_embed_dim(8)
        .with_attention_dim(8)
        .with_hidden_dim(16)
        .with_dropout(0.0);
    let config = CaptionerConfig::new(EncoderConfig::ResNet(encoder), decoder);
    let model = config.init_with_encoder(
        config.encoder.init::<Train>(&device).freeze_early_layers(),
        &device,
    );
    let batch = CaptionBatch {
        input: EncoderInput::Images(Tensor::random(
            [2, 3, 64, 64],
            Distribution::Normal(0.0, 1.0),
            &device,
        )),
        tokens: Tensor::from_ints([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]], &device),
        image_of_caption: Tensor::from_ints([0, 1], &device),
        lengths: vec![5, 4],
        decode: None,
        self_critical: None,
        shapes: Shapes::Packed,
    };
    let before = values(&model);
    let loss = model.forward(batch).loss;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let (lr, encoder_lr) = (1e-2, 1e-4);
    let mut optimizer = EncoderDecoderAdam::new(&AdamConfig::new(), encoder_lr / lr);
    let model = optimizer.step(lr, model, grads);
    let after = values(&model);

    let early = |p: &str| {
        p.starts_with("encoder.conv1")
            || p.starts_with("encoder.bn1")
            || p.starts_with("encoder.layer1")
    };
    assert_eq!(
        largest_change(&before, &after, early),
        0.0,
        "stem and layer1 are frozen"
    );
    let statistics = |p: &str| p.contains("running_");
    assert_eq!(
        largest_change(&before, &after, statistics),
        0.0,
        "batch statistics are fixed"
    );
    // Adam's first step moves each parameter by about its learning rate.
    let later = |p: &str| p.starts_with("encoder.layer4") && p.ends_with("conv2.weight");
    let moved = largest_change(&before, &after, later);
    assert!(
        (0.5e-4..=1.5e-4).contains(&moved),
        "layer4 moved by {moved}, not ~1e-4"
    );
    let decoder = largest_change(&before, &after, |p| p.starts_with("decoder."));
    assert!(
        (0.5e-2..=1.5e-2).contains(&decoder),
        "decoder moved by {decoder}, not ~1e-2"
    );
}

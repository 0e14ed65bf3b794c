//! Our ResNet, Inception v3 and EfficientNet-Lite against PyTorch's: torchvision's
//! architectures and the reference EfficientNet-Lite (narrowed so the files stay small) with
//! random weights and batch statistics, saved by `tests/fixtures/make_encoders.py` and
//! `make_efficientnet_lite.py` as `.pth` (and `.safetensors`) under the published files' key
//! names, with the feature maps and pooled grids that PyTorch computed for a fixed input.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;

/// The backend of the tests that name none.
type B = NdArray;
use burn::prelude::*;
use burn_store::{ModuleStore, SafetensorsStore};
use captioner_model::{
    Backbone, EfficientNetLiteConfig, Encoder, EncoderConfig, InceptionV3Config, ResNetConfig,
    WeightsError,
};

#[cfg(feature = "flex")]
use burn::backend::Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The input the fixture script feeds: `1.5 sin(0.37 i)` over the flat index.
fn fixed_input<B: Backend>(shape: [usize; 4]) -> Tensor<B, 4> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| ((0.37 * i as f64).sin() * 1.5) as f32)
        .collect();
    Tensor::<B, 1>::from_floats(values.as_slice(), &Default::default()).reshape(shape)
}

/// PyTorch's output `name` from `<fixture>.expected.safetensors`.
fn expected(fixture_name: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let mut store =
        SafetensorsStore::from_file(fixture(&format!("{fixture_name}.expected.safetensors")));
    let snapshot = store
        .get_snapshot(name)
        .expect("readable fixture")
        .unwrap_or_else(|| panic!("{name} in {fixture_name}.expected.safetensors"));
    let data = snapshot.to_data().expect("tensor data");
    (data.shape.as_slice().to_vec(), data.to_vec().unwrap())
}

/// Largest difference, relative to the largest reference value (or 1).
fn assert_close<B: Backend, const D: usize>(
    ours: Tensor<B, D>,
    (shape, reference): (Vec<usize>, Vec<f32>),
    what: &str,
) {
    assert_eq!(ours.dims().to_vec(), shape, "{what}: shape");
    let ours: Vec<f32> = ours.into_data().to_vec().unwrap();
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: differs from PyTorch by up to {worst} (largest value {scale})"
    );
}

fn loaded<B: Backend>(config: EncoderConfig, file: &str, network: &str) -> Encoder<B> {
    let mut encoder = config.init::<B>(&Default::default());
    let report = encoder
        .load_weights(&fixture(file), network)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.applied > 0);
    encoder
}

fn check_resnet<B: Backend>(encoder: &Encoder<B>, fixture_name: &str, batch: usize) {
    let Encoder::ResNet(resnet) = encoder else {
        panic!("a ResNet")
    };
    let input = fixed_input([batch, 3, 112, 112]);
    assert_close(
        resnet.feature_map(input.clone()),
        expected(fixture_name, "feature_map"),
        "layer4 map",
    );
    assert_close(
        encoder.forward(input),
        expected(fixture_name, "grid"),
        "14x14 grid",
    );
}

#[test]
fn resnet18_basic_blocks_match_pytorch_from_pth_and_safetensors() {
    let config = EncoderConfig::ResNet(ResNetConfig::new(18).with_width(8).with_image_size(112));
    let from_pth = loaded::<B>(config.clone(), "resnet18_w8.pth", "resnet18");
    check_resnet(&from_pth, "resnet18_w8", 2);
    let from_safetensors = loaded::<B>(config, "resnet18_w8.safetensors", "resnet18");
    check_resnet(&from_safetensors, "resnet18_w8", 2);
}

fn check_resnet50<B: Backend>() {
    let config = EncoderConfig::ResNet(ResNetConfig::new(50).with_width(8).with_image_size(112));
    let encoder = loaded::<B>(config, "resnet50_w8.pth", "resnet50");
    check_resnet(&encoder, "resnet50_w8", 1);
}

fn check_inception_v3<B: Backend>() {
    let config = EncoderConfig::InceptionV3(
        InceptionV3Config::new()
            .with_width_divisor(8)
            .with_image_size(160),
    );
    let encoder = loaded::<B>(config, "inception_v3_d8.pth", "inception-v3");
    let Encoder::InceptionV3(inception) = &encoder else {
        panic!("Inception v3")
    };
    let input = fixed_input::<B>([1, 3, 160, 160]);
    assert_close(
        inception.feature_map(input.clone()),
        expected("inception_v3_d8", "feature_map"),
        "Mixed_7c map",
    );
    assert_close(
        encoder.forward(input),
        expected("inception_v3_d8", "grid"),
        "8x8 grid",
    );
}

/// Width 0.25 and depth 1.1 (21 blocks) at 100x100, where "SAME" padding is asymmetric, from
/// a legacy-format `.pth` whose kernels are permuted views, as in the published file.
fn check_efficientnet_lite<B: Backend>() {
    let config = EncoderConfig::EfficientNetLite(
        EfficientNetLiteConfig::new()
            .with_width_coefficient(Some(0.25))
            .with_depth_coefficient(Some(1.1))
            .with_image_size(100)
            .with_grid(4),
    );
    let encoder = loaded::<B>(config, "efficientnet_lite_w025.pth", "efficientnet-lite0");
    let Encoder::EfficientNetLite(lite) = &encoder else {
        panic!("EfficientNet-Lite")
    };
    let input = fixed_input::<B>([1, 3, 100, 100]);
    assert_close(
        lite.feature_map(input.clone()),
        expected("efficientnet_lite_w025", "feature_map"),
        "head map",
    );
    assert_close(
        encoder.forward(input),
        expected("efficientnet_lite_w025", "grid"),
        "4x4 grid",
    );
}

#[test]
fn efficientnet_lite_matches_pytorch_from_a_legacy_pth_of_permuted_kernels() {
    check_efficientnet_lite::<B>();
}

#[test]
fn resnet50_bottleneck_blocks_match_pytorch() {
    check_resnet50::<B>();
}

#[test]
fn inception_v3_matches_pytorch_with_transform_input() {
    check_inception_v3::<B>();
}

/// Flex runs Burn's own convolutions (with the batch norm folded in), not the matrix
/// products that ndarray runs.
#[cfg(feature = "flex")]
#[test]
fn on_flex_resnet50_inception_v3_and_efficientnet_lite_match_pytorch() {
    check_resnet50::<Flex>();
    check_inception_v3::<Flex>();
    check_efficientnet_lite::<Flex>();
}

#[test]
fn weights_of_another_network_are_refused_with_the_keys_named() {
    // ResNet-50's file in a ResNet-18: every block differs.
    let config = EncoderConfig::ResNet(ResNetConfig::new(18).with_width(8));
    let mut encoder = config.init::<B>(&Default::default());
    let err = encoder
        .load_weights(&fixture("resnet50_w8.pth"), "resnet18")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WeightsError::Mismatch { .. }), "{text}");
    assert!(
        text.contains("resnet50_w8.pth") && text.contains("do not fit resnet18"),
        "{text}"
    );
    assert!(
        text.contains("not in resnet18") && text.contains("conv3.weight"),
        "{text}"
    );

    // Full-width ResNet-18 against the narrow file: shapes named, model's then file's.
    let mut wide = EncoderConfig::ResNet(ResNetConfig::new(18)).init::<B>(&Default::default());
    let text = wide
        .load_weights(&fixture("resnet18_w8.pth"), "resnet18")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("conv1.weight: resnet18 has [64, 3, 7, 7], the file [8, 3, 7, 7]"),
        "{text}"
    );

    // Not a weights file at all.
    let text = wide
        .load_weights(&fixture("make_encoders.py"), "resnet18")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("cannot read the weights") && text.contains("make_encoders.py"),
        "{text}"
    );
}

#[test]
fn a_deeper_resnets_file_is_not_silently_truncated() {
    // ResNet-50's keys are a subset of ResNet-101's with the same shapes: the extra blocks
    // must make it an error rather than load the first blocks and drop the rest. A ResNet-18
    // file into a ResNet-34 is the missing-key side of the same mistake.
    let mut resnet34 =
        EncoderConfig::ResNet(ResNetConfig::new(34).with_width(8)).init::<B>(&Default::default());
    let text = resnet34
        .load_weights(&fixture("resnet18_w8.pth"), "resnet34")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("missing (80)") && text.contains("layer1.2."),
        "{text}"
    );
}

//! The captioning model: a CNN encoder giving a grid of features, and an LSTM decoder with soft
//! (additive) attention over that grid, as in "Show, Attend and Tell" (Xu et al. 2015).
//!
//! Encoders: a small CNN trained from scratch, torchvision's ResNet-18..152 and Inception v3
//! that load the ImageNet `.pth` files users already have, and EfficientNet-Lite0..2 from the
//! `.pth` files of their PyPI packages.
//!
//! Everything is generic over Burn's `Backend`: the same code runs on the CPU (ndarray, flex)
//! and on GPUs (CUDA, WGPU).

// In layers, each module using only those above it; at the edge, captioning with a trained
// model (`inference`) and the hooks of burn-train (`step`, the only module that uses it).
pub mod rows;

pub mod activation;
pub mod attention;
pub mod conv_bn;
pub mod frozen_batch_norm;
pub mod fused;
pub mod imagenet;
pub mod lstm_cell;
pub mod step_linear;

pub mod pth_strides;
pub mod torchvision_weights;

pub mod backbone;
pub mod efficientnet_lite;
pub mod encoder;
pub mod inception_v3;
pub mod resnet;
pub mod small_cnn;

pub mod decoder;

pub mod search;
pub mod self_critical;

pub mod batch;

pub mod captioner;

pub mod ensemble;
pub mod export;
pub mod inference;
pub mod step;
pub mod weights_file;

pub use backbone::{Backbone, BackboneConfig};
pub use batch::{CaptionBatch, DecodeRequest, EncoderInput};
pub use captioner::{
    teacher_forced_loss, weighted_log_likelihood_loss, Captioner, CaptionerConfig, CaptionerOutput,
};
pub use decoder::{Decoder, DecoderConfig};
pub use efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
pub use encoder::{
    Encoder, EncoderConfig, EncoderMode, EncoderName, EncoderRow, EncoderSettings, Network,
};
pub use ensemble::{Ensemble, Inputs, NoCutEndings, NotAnEnsemble, Prepared};
pub use inception_v3::{InceptionV3, InceptionV3Config};
pub use inference::{Batching, Captioning, ModelFiles, WeightsRecorder};
pub use resnet::{ResNet, ResNetConfig};
pub use rows::{bucket_steps, pad_with_first_row, Shapes};
pub use search::{
    beam_search, fixed_search_images, greedy, sample_rows, search_rows, Alternative, Caption,
    Endings, SearchConfig,
};
pub use self_critical::{
    advantages, Baseline, CaptionReward, Reward, SelfCriticalConfig, SelfCriticalRequest,
    SelfCriticalStats,
};
pub use small_cnn::{SmallCnn, SmallCnnConfig};
pub use step::{ImageCaption, StepLoss, StepOutput, TrainStepOutput, ValidationOutput};
pub use torchvision_weights::{LoadedWeights, WeightsError};
pub use weights_file::LoadError;

/// Settings that contradict each other or the network, said in the settings' own terms
/// (the model crate's errors are typed: this, [`LoadError`] and [`WeightsError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Token ids that the model treats specially: the vocabulary's own
/// (`<pad>` ignored by the loss, `<start>` fed first, `<end>` emitted to stop, `<unk>` a
/// training target that decoding never emits).
pub mod tokens {
    pub use captioner_datasets::vocab::{END, PAD, START, UNK};
}

#[cfg(test)]
mod test_random;

// Our encoders against torchvision's (`tests/torchvision_encoders.rs`) are compiled into the
// unit tests' binary rather than a binary of their own: a release build compiles the model
// and Burn's generic code again for every test binary that names a backend. The file uses the
// crate by its name, as a user's code would.
#[cfg(test)]
extern crate self as captioner_model;
#[cfg(test)]
#[path = "../tests/torchvision_encoders.rs"]
mod torchvision_encoders;

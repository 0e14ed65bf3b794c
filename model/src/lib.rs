//! The captioning model: a CNN encoder giving a grid of features, and an LSTM decoder with soft
//! (additive) attention over that grid, as in "Show, Attend and Tell" (Xu et al. 2015).
//!
//! Everything is generic over Burn's `Backend`: the same code runs on the CPU (ndarray, flex)
//! and on GPUs (CUDA, WGPU).

pub mod attention;
pub mod batch;
pub mod captioner;
pub mod decoder;
pub mod encoder;
pub mod lstm_cell;
pub mod search;
pub mod small_cnn;
mod step;

pub use batch::{CaptionBatch, EncoderInput};
pub use captioner::{Captioner, CaptionerConfig, CaptionerOutput};
pub use decoder::{Decoder, DecoderConfig};
pub use encoder::{Encoder, EncoderConfig};
pub use search::{beam_search, greedy, Caption, SearchConfig};
pub use small_cnn::{SmallCnn, SmallCnnConfig};

/// Token ids that the model treats specially; they match `captioner_datasets::vocab`.
pub mod tokens {
    /// Padding: ignored by the loss.
    pub const PAD: u32 = 0;
    /// First input of the decoder.
    pub const START: u32 = 1;
    /// Emitted to end a caption.
    pub const END: u32 = 2;
}

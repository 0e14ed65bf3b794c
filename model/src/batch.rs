//! The model's input for one training or validation step.

use burn::prelude::*;

use crate::rows::Shapes;
use std::sync::Arc;

use crate::search::{Endings, SearchConfig};
use crate::self_critical::SelfCriticalRequest;

/// A batch of images with one or more captions each (all five of an image's captions share
/// one pass of the encoder, as `seq_per_img` does in the reference PyTorch trainers).
#[derive(Debug, Clone)]
pub struct CaptionBatch<B: Backend> {
    /// The images, as pixels or as cached encoder features.
    pub input: EncoderInput<B>,
    /// Caption token ids `<start> w1 .. wn <end> <pad>..`, `[captions, max_len]`.
    pub tokens: Tensor<B, 2, Int>,
    /// For each caption, the row of its image in `input`, `[captions]`.
    pub image_of_caption: Tensor<B, 1, Int>,
    /// For each caption, its number of tokens, `<start>` and `<end>` included. The decoder
    /// runs longest first; batches sorted by decreasing length (as the batcher makes them)
    /// need no reordering.
    pub lengths: Vec<usize>,
    /// Validation only: images of the batch to caption by search as well (their scores are
    /// the validation metric).
    pub decode: Option<DecodeRequest>,
    /// Training by self-critical sequence training: the step samples captions of the batch's
    /// images and learns from their rewards (the batch's captions are then unused); `None`:
    /// the step is teacher-forced on the captions.
    pub self_critical: Option<SelfCriticalRequest>,
    /// How the batch was laid out, and so how the decoder unrolls over it.
    pub shapes: Shapes,
}

/// Which images of a validation batch to caption, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeRequest {
    /// Rows of the batch's images.
    pub rows: Vec<usize>,
    /// The same images' ids in their dataset, handed back with the captions.
    pub image_ids: Vec<usize>,
    /// Beam width and length cap.
    pub search: SearchConfig,
    /// The words a caption may not end on.
    pub endings: Arc<Endings>,
}

/// What the encoder side of a batch holds.
#[derive(Debug, Clone)]
pub enum EncoderInput<B: Backend> {
    /// Normalised images, `[images, 3, height, width]`: the encoder runs on them.
    Images(Tensor<B, 4>),
    /// Encoder features computed beforehand (a feature cache), `[images, positions,
    /// channels]`: the encoder is skipped.
    Features(Tensor<B, 3>),
}

//! Captioning data: the embedded synthetic "shapes" dataset, the vocabulary, image decoding and
//! the in-memory caption dataset that the trainer's data loader reads.

pub mod caption_dataset;
pub mod image;
pub mod rng;
pub mod shapes;
pub mod vocab;

pub use caption_dataset::{CaptionDataset, CaptionItem};
pub use vocab::{tokenize, Vocab};

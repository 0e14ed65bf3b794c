//! Captioning data: the embedded synthetic "shapes" dataset, the real datasets on disk
//! (Flickr8k, Flickr30k, MS-COCO, Karpathy splits), the vocabulary, image decoding and the
//! in-memory caption dataset that the trainer's data loader reads.

pub mod caption_dataset;
pub mod coco;
pub mod corpus;
pub mod decode;
pub mod error;
pub mod feature_cache;
pub mod files;
pub mod flickr;
pub mod format;
pub mod image;
pub mod karpathy;
pub mod names;
pub mod problems;
pub mod progress;
pub mod ptb_tokenizer;
pub mod rng;
pub mod shapes;
pub mod split;
pub mod vocab;

pub use caption_dataset::{CaptionDataset, CaptionItem, ItemImage, PerImageDataset};
pub use corpus::{Corpus, CorpusImage};
pub use error::DatasetError;
pub use format::{DatasetName, Format};
pub use split::Split;
pub use vocab::{tokenize, Vocab};

// The behaviour tests (`tests/it/`, datasets and pictures as found on disk) are compiled into
// the unit tests' binary, as in the model and training crates: one test binary per crate.
// They use the crate by its name, as a user's code would.
#[cfg(test)]
extern crate self as captioner_datasets;
#[cfg(test)]
#[path = "../tests/it/main.rs"]
mod it;

//! Datasets and pictures as they are found on disk, through the crate's public API. Compiled
//! into the unit tests' binary (`src/lib.rs`).

mod formats;
mod pictures;

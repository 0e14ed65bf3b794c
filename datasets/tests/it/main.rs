//! Datasets and pictures as they are found on disk, in one test binary.

mod formats;
mod pictures;

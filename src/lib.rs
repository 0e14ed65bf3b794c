//! The command-line side of captioner: choosing the backend at run time. The binaries live in
//! `src/bin/` (`train`, `infer`); the model, data and training code in the workspace crates.

pub mod device;

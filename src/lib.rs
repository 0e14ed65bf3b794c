//! The command-line side of captioner: choosing the backend at run time. The binaries live in
//! `src/bin/` (`train`, `infer`, `eval`, `features`); the model, data and training code in the workspace crates.

pub mod device;
pub mod npy;

/// Burn's CPU backends allocate and free many short-lived tensors every step; mimalloc reuses
/// that memory instead of returning it to the kernel, which cut system time sharply here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

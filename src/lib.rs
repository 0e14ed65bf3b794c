//! The command-line side of captioner: choosing the backend at run time, which pictures to
//! caption and what to show of the results. The binaries live in `src/bin/` (`train`,
//! `infer`, `eval`, `features`); the model, data and training code in the workspace crates.

pub mod attention_image;
pub mod device;
pub mod npy;
pub mod pictures;
pub mod report;
pub mod settings;

use std::path::Path;

/// Writes `bytes` to `path` whole or not at all: to a temporary name beside it, then renamed
/// over it, so that a reader never sees half a file. Creates the folders above it.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(name);
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            std::fs::remove_file(&temporary).ok();
        })
}

/// Burn's CPU backends allocate and free many short-lived tensors every step; mimalloc reuses
/// that memory instead of returning it to the kernel, which cut system time sharply here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, the same in mimalloc 2
/// and 3; the Rust bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps memory that the program frees for its next allocations instead of handing it back to
/// the kernel 10 ms later (mimalloc's default). A training step frees and reallocates the same
/// large buffers (per-step gradients of 15 MB and more) every few milliseconds; given back,
/// each one came back as fresh pages the kernel had to zero, a sixth of a CPU decoder step's
/// time (`bench --row 1b`: 27 -> 33 captions/s). The resident size stays at its peak instead,
/// as with PyTorch's caching allocator. Call it first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: sets one integer option of the allocator; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

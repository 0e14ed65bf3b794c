//! The command-line side of captioner: choosing the backend at run time, the work each
//! binary runs on it ([`jobs`], compiled here once per backend), which pictures to caption
//! and what to show of the results. The binaries live in `src/bin/` (`train`, `infer`,
//! `eval`, `features`, `serve`, `export`) and only parse their flags and call [`jobs`]; the model, data
//! and training code live in the workspace crates.

pub mod attention_image;
pub mod decoding;
pub mod device;
pub mod jobs;
pub mod named;
pub mod npy;
pub mod pictures;
pub mod report;
pub mod settings;
pub mod shipped;

pub use captioner_datasets::files::write_file;

use std::process::ExitCode;

/// Ends a command that failed with exit status `status`: its error on stderr as one message
/// with its causes (`error: what: why`), never a Rust backtrace, whatever `RUST_BACKTRACE`
/// says: errors here are for users.
pub fn report_error(error: &anyhow::Error, status: u8) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(status)
}

/// Ends a command: success, or its error as [`report_error`] says it, with exit status 1.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report_error(&error, 1),
    }
}

/// Makes a failure to write to stdout (a full disk, `> /dev/full`) end the command with a
/// message instead of a panic, and a closed pipe (`train | head`) end it quietly. `println!`
/// panics when stdout fails, wherever it is called (library code prints progress); this
/// panic hook recognises that panic and no other. Call it first thing in `main`.
pub fn stdout_failures_are_messages() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if let Some(why) = message.strip_prefix("failed printing to stdout: ") {
            if why.starts_with("Broken pipe") {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to stdout: {why}");
            std::process::exit(1);
        }
        default(info)
    }));
}

/// Makes Ctrl-C (SIGINT, and a console's Ctrl-C on Windows) stop training gently: the first
/// asks the run to stop through `request` (it checkpoints the step it is in, or finishes the
/// epoch it is validating, then ends), and says so; a second ends the process at once (exit
/// status 130). Under the dashboard, which reads the keyboard itself, the keys do not reach
/// here: its `q` makes the same request.
pub fn stop_on_ctrl_c(request: burn::train::Interrupter) {
    let watch = move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!(
                "\nStopping: the run checkpoints the step it is in (or, if it is validating, \
                 the epoch) and ends. Ctrl-C again quits at once, losing what was trained \
                 since the last checkpoint."
            );
            request.stop(Some("Ctrl-C"));
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("Quit.");
                std::process::exit(130);
            }
        });
    };
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(watch)
        .ok();
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

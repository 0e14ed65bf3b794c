//! `serve`: captions pictures sent over HTTP, with a page to drop them on.

use std::net::SocketAddr;
use std::path::PathBuf;

use captioner::decoding::Decoding;
use captioner::device::DeviceKind;
use captioner::jobs::serve::ServeJob;
use captioner::shipped::choose_models;
use captioner_datasets::image::PictureLimits;
use clap::Parser;

/// Serve a model trained by `train` over HTTP.
///
/// `POST /caption` with a picture (JPEG, PNG, WebP, BMP, TIFF or GIF) as the request body answers JSON: the caption,
/// its words, its score (total log-probability), the beam's other captions and the time it
/// took; `POST /caption?attention=1` adds the attention grid as a base64 PNG. `GET /` is a
/// page to drop a picture on. The model is loaded once and captions one batch at a time:
/// requests that arrive together are captioned together, the others wait their turn. A
/// picture over the limits, or not a picture, is refused with a 4xx status and a message.
///
///   curl --data-binary @photo.jpg http://127.0.0.1:8080/caption
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Args {
    /// Run folder written by `train` (model.mpk, model.json, vocab.json) or folder written by
    /// `export` [default: $CAPTIONER_MODEL, else the shipped Flickr8k captioner in
    /// artifacts/pretrained/flickr8k-lite2]. Given more than once, the models caption together (an ensemble: at every
    /// step the next word's probability is the mean of theirs); they must share one vocabulary,
    /// as runs on the same training captions do, and may differ in encoder.
    #[arg(long, value_name = "DIR")]
    model: Vec<PathBuf>,
    /// Port to listen on (0: any free port, said on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on: the default takes requests from this machine only; 0.0.0.0
    /// takes them from any.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[command(flatten)]
    decoding: Decoding,
    /// Most pictures captioned together, from requests that are waiting.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    batch_size: u16,
    /// Requests that may wait for the model; more are refused with 503 until it catches up.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    queue: u16,
    /// Largest picture accepted, in bytes.
    #[arg(long, default_value_t = 10 << 20)]
    max_bytes: u64,
    /// Largest picture accepted, in pixels (width x height, read from its header before it is
    /// decoded).
    #[arg(long, default_value_t = 40_000_000)]
    max_pixels: u64,
    /// Seconds a request's body may go without a byte before the request is answered 408
    /// (Request Timeout) and its connection closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    body_timeout: u16,
    /// Backend to run on: auto takes the first of cuda, wgpu, flex, ndarray that is built in
    /// and starts (said on stderr). GPU backends need their cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

fn main() -> std::process::ExitCode {
    captioner::keep_freed_memory();
    let args = Args::parse();
    let models = match choose_models(args.model) {
        Ok(models) => models,
        Err(e) => return captioner::report_error(&e, 2),
    };
    let job = ServeJob {
        models,
        address: SocketAddr::new(args.host, args.port),
        search: args.decoding.search(),
        block_repeats: args.decoding.block_repeats,
        block_cut_endings: args.decoding.block_cut_endings,
        batch_size: args.batch_size.into(),
        queue: args.queue.into(),
        limits: PictureLimits {
            max_bytes: args.max_bytes,
            max_pixels: args.max_pixels,
        },
        body_patience: std::time::Duration::from_secs(args.body_timeout.into()),
    };
    match captioner::jobs::serve::run(args.device, job) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => captioner::report_error(&e, 2),
    }
}

//! Captioning pictures sent over HTTP, with a page to drop them on (the `serve` binary's
//! job): the server on its own threads, the model on the job's thread, one batch at a time.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::image::{decode_rgb, ImageLoadError, PictureLimits, FORMATS};
use captioner_model::{Batching, Ensemble, Inputs, Prepared, SearchConfig};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};

use crate::attention_image::attention_grid;
use crate::device::{run_chosen, BackendJob, DeviceKind, Target};
use crate::report::Described;

/// A picture waiting for the model.
struct Request {
    picture: Prepared,
    attention: bool,
    /// When it was ready for the model.
    queued: Instant,
    answer: tokio::sync::oneshot::Sender<Result<Answer, String>>,
}

/// What the model said about one picture.
#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    described: Described,
    /// The attention grid, PNG in base64, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    attention_png: Option<String>,
    /// Pictures captioned together with this one.
    batch: usize,
    timing_ms: Timing,
}

#[derive(Serialize, Default)]
struct Timing {
    /// Reading the picture and preparing it.
    decode: f64,
    /// Waiting for the model.
    queue: f64,
    /// Captioning its batch.
    caption: f64,
    /// From the request's arrival to the answer.
    total: f64,
}

#[derive(Clone)]
struct App {
    requests: SyncSender<Request>,
    inputs: Inputs,
    limits: PictureLimits,
    /// How long a request's body may stall.
    patience: Duration,
}

#[derive(Deserialize)]
struct CaptionQuery {
    #[serde(default)]
    attention: Option<String>,
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Reads a request's body within the picture's byte limit, waiting at most `patience` for each
/// of its pieces: a body that stalls (a client that declared more bytes than it sends) is
/// answered 408 and its connection closed, rather than held open.
async fn read_body(body: Body, max_bytes: u64, patience: Duration) -> Result<Bytes, Response> {
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut body = Limited::new(body, limit);
    let mut bytes = Vec::new();
    loop {
        let frame = match tokio::time::timeout(patience, body.frame()).await {
            Err(_) => {
                let message = format!(
                    "the request's body stalled: no bytes for {:.1} s ({} received); send the \
                     picture as the body, with its length",
                    patience.as_secs_f64(),
                    bytes.len()
                );
                let mut refused = refusal(StatusCode::REQUEST_TIMEOUT, message);
                refused
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(refused);
            }
            Ok(None) => return Ok(Bytes::from(bytes)),
            Ok(Some(frame)) => frame,
        };
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Err(e) if e.is::<LengthLimitError>() => {
                return Err(refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the picture is over the limit of {max_bytes} bytes"),
                ))
            }
            Err(e) => return Err(refusal(StatusCode::BAD_REQUEST, e.to_string())),
        }
    }
}

async fn caption(
    State(app): State<App>,
    Query(query): Query<CaptionQuery>,
    body: Body,
) -> Response {
    let received = Instant::now();
    let body = match read_body(body, app.limits.max_bytes, app.patience).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    if body.is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            format!("send a picture ({FORMATS}) as the request body"),
        );
    }
    let (limits, inputs) = (app.limits, app.inputs.clone());
    let decoded = tokio::task::spawn_blocking(move || {
        decode_rgb(&body, "the picture", limits).map(|p| inputs.prepare(&p))
    })
    .await;
    let picture = match decoded {
        Ok(Ok(picture)) => picture,
        Ok(Err(e @ ImageLoadError::TooLarge { .. })) => {
            return refusal(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Ok(Err(e)) => return refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let decode = received.elapsed();
    let attention = query
        .attention
        .is_some_and(|a| !matches!(a.as_str(), "0" | "false" | "no"));
    let (answer, answered) = tokio::sync::oneshot::channel();
    let request = Request {
        picture,
        attention,
        queued: Instant::now(),
        answer,
    };
    match app.requests.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many pictures are waiting for the model: try again shortly",
            )
        }
        Err(TrySendError::Disconnected(_)) => {
            return refusal(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
        }
    }
    match answered.await {
        Ok(Ok(mut answer)) => {
            answer.timing_ms.decode = decode.as_secs_f64() * 1000.0;
            answer.timing_ms.total = received.elapsed().as_secs_f64() * 1000.0;
            Json(answer).into_response()
        }
        Ok(Err(e)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(_) => refusal(StatusCode::INTERNAL_SERVER_ERROR, "the model stopped"),
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("serve_page.html"))
}

/// A trained run to serve, and how.
pub struct ServeJob {
    /// The run or export folders of the models, which caption together when there are
    /// several (an ensemble).
    pub models: Vec<PathBuf>,
    /// Where to listen (port 0: any free port, said on stderr).
    pub address: SocketAddr,
    /// How captions are searched for.
    pub search: SearchConfig,
    /// No two-word phrase twice in a caption ([`Ensemble::blocking_repeats`]).
    pub block_repeats: bool,
    /// No caption ending on a cut ending ([`Ensemble::blocking_cut_endings`]).
    pub block_cut_endings: bool,
    /// Most pictures captioned together, from requests that are waiting.
    pub batch_size: usize,
    /// Requests that may wait for the model; more are refused with 503.
    pub queue: usize,
    /// The largest picture accepted.
    pub limits: PictureLimits,
    /// How long a request's body may go without a byte before it is answered 408 and its
    /// connection closed.
    pub body_patience: Duration,
}

impl BackendJob for ServeJob {
    type Output = ();
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<()> {
        let models = Ensemble::<B::InnerBackend>::load(&self.models, &target.device)?;
        let run = Ensemble::new(&self.models, &models)?
            .blocking_repeats(self.block_repeats)
            .blocking_cut_endings(self.block_cut_endings)?;
        if self.models.len() > 1 {
            let folders: Vec<String> = self
                .models
                .iter()
                .map(|m| m.display().to_string())
                .collect();
            eprintln!(
                "{} models caption together: {}",
                folders.len(),
                folders.join(", ")
            );
        }
        let batching = Batching {
            batch_size: self.batch_size,
            shapes: target.shapes,
        };
        let (requests, waiting) = sync_channel(self.queue);
        let app = App {
            requests,
            inputs: run.inputs(),
            limits: self.limits,
            patience: self.body_patience,
        };
        let router = Router::new()
            .route("/", get(page))
            .route("/caption", post(caption))
            .with_state(app);
        let address = self.address;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(address))
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        eprintln!("Listening on http://{bound}/ (Ctrl-C stops)");
        // The server runs on the runtime's threads; this thread is the model's.
        let server = std::thread::spawn(move || {
            runtime.block_on(async {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        tokio::signal::ctrl_c().await.ok();
                    })
                    .await
            })
        });
        caption_requests(&run, waiting, &self.search, batching);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
        Ok(())
    }
}

/// Captions waiting pictures until the server stops: all that are waiting together, up to a
/// batch. A failure answers that batch's requests with it; the next batch goes on.
fn caption_requests<B: burn::prelude::Backend>(
    run: &Ensemble<B>,
    waiting: Receiver<Request>,
    search: &SearchConfig,
    batching: Batching,
) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        while batch.len() < batching.batch_size {
            match waiting.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let pictures: Vec<&Prepared> = batch.iter().map(|r| &r.picture).collect();
        let found = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run.caption_prepared(&pictures, search, batching, false)
        }));
        let caption_ms = started.elapsed().as_secs_f64() * 1000.0;
        let n = batch.len();
        match found {
            Ok(captions) => {
                for (request, caption) in batch.into_iter().zip(captions) {
                    let described = Described::new(&caption, run.vocab());
                    let attention_png = request.attention.then(|| {
                        let words: Vec<&str> =
                            described.tokens.iter().map(String::as_str).collect();
                        attention_grid(request.picture.first(), "", &words, &caption.alphas)
                            .ok()
                            .and_then(|grid| {
                                let mut png = std::io::Cursor::new(Vec::new());
                                grid.write_to(&mut png, image::ImageFormat::Png).ok()?;
                                Some(
                                    base64::engine::general_purpose::STANDARD
                                        .encode(png.into_inner()),
                                )
                            })
                    });
                    let queue_ms = started.duration_since(request.queued).as_secs_f64() * 1000.0;
                    let answer = Answer {
                        described,
                        attention_png: attention_png.flatten(),
                        batch: n,
                        timing_ms: Timing {
                            queue: queue_ms,
                            caption: caption_ms,
                            ..Timing::default()
                        },
                    };
                    request.answer.send(Ok(answer)).ok();
                }
            }
            Err(_) => {
                for request in batch {
                    request
                        .answer
                        .send(Err("captioning failed on this batch".into()))
                        .ok();
                }
            }
        }
    }
}

/// Serves `job` on the backend `device` asks for (said on stderr first) until Ctrl-C.
#[inline(never)]
pub fn run(device: DeviceKind, job: ServeJob) -> Result<()> {
    run_chosen(device, job)
}

//! `infer`: captions pictures with a trained run.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner::attention_image::attention_grid;
use captioner::decoding::Decoding;
use captioner::device::{run_chosen, BackendJob, DeviceKind, Target};
use captioner::pictures::{collect, Picture};
use captioner::report::{dominant_caption, html_page, page_title, Described, PageEntry};
use captioner::write_file;
use captioner_datasets::image::{load_rgb, RgbImage};
use captioner_datasets::progress::Progress;
use captioner_model::{Batching, Captioning, ModelFiles};
use clap::Parser;
use rayon::prelude::*;

/// Caption pictures with a model trained by `train`.
///
/// Takes picture files, folders (walked recursively for .jpg, .jpeg and .png files, in path
/// order) and `-` (one path a line on stdin). Prints one line per picture, `path<TAB>caption`,
/// or JSON lines with --json; --out writes a caption file per picture instead. A picture that
/// cannot be read is reported on stderr and the others are still captioned; the exit status
/// is then 1 (2 when the model cannot be loaded or an output cannot be written).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run folder written by `train` (holds model.mpk, model.json, vocab.json).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Pictures to caption: files (JPEG or PNG, any size: prepared as the run's training
    /// pictures were), folders (recursively; names starting with a dot are skipped), or `-`
    /// to read paths from stdin, one a line.
    #[arg(value_name = "PICTURE|DIR|-", required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    decoding: Decoding,
    /// Print JSON lines: {"image", "caption", "tokens", "score", "finished", "alternatives"}
    /// (score: the caption's total log-probability; finished: false when cut at --max-len;
    /// alternatives: the beam's other captions with their scores).
    #[arg(long)]
    json: bool,
    /// Write each caption to DIR/<name>.txt instead of printing it: the picture's name with
    /// .txt for its extension, under the same subfolders as in a folder given (the layout
    /// that tools preparing image datasets read). Prints nothing per picture unless --json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write for each picture DIR/<name>.png: the picture once per word of its caption,
    /// lit where the model looked when it wrote that word (Figure 3 of Show, Attend and Tell).
    #[arg(long, value_name = "DIR")]
    attention_dir: Option<PathBuf>,
    /// Write one self-contained HTML page (pictures inlined) with each picture's caption,
    /// the beam's other captions and their scores, and its attention grid.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Pictures read and captioned together.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    batch_size: u16,
    /// Backend to run on: auto takes the first of cuda, wgpu, flex, ndarray that is built in
    /// and starts (said on stderr). GPU backends need their cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

/// What a run of `infer` did.
struct Summary {
    captioned: usize,
    unreadable: usize,
    /// Stdout was closed early (`infer ... | head`): captioning stopped there.
    stdout_closed: bool,
}

struct InferJob {
    args: Args,
    pictures: Vec<Picture>,
}

impl BackendJob for InferJob {
    type Output = Summary;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Summary> {
        let args = &self.args;
        let run =
            Captioning::<B::InnerBackend>::load(&ModelFiles::new(&args.model), &target.device)?;
        let search = args.decoding.search();
        let batching = Batching {
            batch_size: args.batch_size.into(),
            shapes: target.shapes,
        };
        let started = Instant::now();
        // Shown past one batch of pictures.
        let progress = Progress::new(
            "captioning",
            self.pictures.len(),
            self.pictures.len() > batching.batch_size,
        );
        let mut stdout = BufWriter::new(std::io::stdout().lock());
        let mut summary = Summary {
            captioned: 0,
            unreadable: 0,
            stdout_closed: false,
        };
        let mut captions: Vec<String> = Vec::with_capacity(self.pictures.len());
        let mut page = Vec::new();
        'batches: for chunk in self.pictures.chunks(batching.batch_size) {
            // Read and prepared on every core; a picture that cannot be read is left out.
            let read: Vec<_> = chunk
                .par_iter()
                .map(|picture| load_rgb(&picture.path).map(|p| run.prepare(&p)))
                .collect();
            let mut ready: Vec<(&Picture, RgbImage)> = Vec::with_capacity(chunk.len());
            for (picture, read) in chunk.iter().zip(read) {
                match read {
                    Ok(prepared) => ready.push((picture, prepared)),
                    Err(e) => {
                        progress.say(&format!("error: {e} (skipped)"));
                        summary.unreadable += 1;
                    }
                }
            }
            let prepared: Vec<&RgbImage> = ready.iter().map(|(_, p)| p).collect();
            let found = run.caption_prepared(&prepared, &search, batching);
            for ((picture, prepared), caption) in ready.iter().zip(found) {
                let described = Described::new(&caption, &run.vocab);
                if args.json {
                    let mut line = serde_json::to_value(&described)?;
                    line["image"] = picture.path.display().to_string().into();
                    if !print(&mut stdout, &format!("{line}"))? {
                        summary.stdout_closed = true;
                        break 'batches;
                    }
                } else if args.out.is_none()
                    && !print(
                        &mut stdout,
                        &format!("{}\t{}", picture.path.display(), described.caption),
                    )?
                {
                    summary.stdout_closed = true;
                    break 'batches;
                }
                if let Some(out) = &args.out {
                    let path = out.join(&picture.relative).with_extension("txt");
                    write_file(&path, format!("{}\n", described.caption).as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                if args.attention_dir.is_some() || args.html.is_some() {
                    let words: Vec<&str> = described.tokens.iter().map(String::as_str).collect();
                    let name = picture.relative.display().to_string();
                    let grid = attention_grid(prepared, &name, &words, &caption.alphas)
                        .with_context(|| format!("{}: cannot draw its attention", name))?;
                    if let Some(dir) = &args.attention_dir {
                        let path = dir.join(&picture.relative).with_extension("png");
                        write_file(&path, &encode(&grid, image::ImageFormat::Png)?)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                    }
                    if args.html.is_some() {
                        page.push(PageEntry {
                            name,
                            described: described.clone(),
                            grid_jpeg: encode(&grid, image::ImageFormat::Jpeg)?,
                        });
                    }
                }
                captions.push(described.caption);
                summary.captioned += 1;
            }
            progress.inc(chunk.len());
        }
        progress.finish();
        if let Err(e) = stdout.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                summary.stdout_closed = true;
            } else {
                return Err(anyhow!("cannot write to stdout: {e}"));
            }
        }
        if let Some(html) = &args.html {
            let inputs: Vec<String> = args
                .inputs
                .iter()
                .map(|p| match p.as_os_str() == "-" {
                    true => "paths from stdin".to_string(),
                    false => p.display().to_string(),
                })
                .collect();
            write_file(html, html_page(&page_title(&inputs), &page).as_bytes())
                .with_context(|| format!("cannot write {}", html.display()))?;
            eprintln!("Wrote {} ({} pictures)", html.display(), page.len());
        }
        if let Some((caption, count, total)) = dominant_caption(captions.iter().map(String::as_str))
        {
            eprintln!(
                "warning: {count} of {total} pictures got the same caption, \"{caption}\". \
                 Either the pictures are prepared unlike the run's training pictures (another \
                 crop, colour order or scale), or the model has not learnt to tell them apart: \
                 check it on a few pictures from its own dataset."
            );
        }
        if summary.captioned > 0 {
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "Captioned {} picture{} in {seconds:.2} s ({:.1} ms a picture, beam {})",
                summary.captioned,
                if summary.captioned == 1 { "" } else { "s" },
                1000.0 * seconds / summary.captioned as f64,
                search.beam_size
            );
        }
        Ok(summary)
    }
}

/// Writes `line` to stdout; false when stdout was closed (a reader such as `head` is done),
/// an error for any other failure (a full disk).
fn print(stdout: &mut impl Write, line: &str) -> Result<bool> {
    match writeln!(stdout, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow!("cannot write to stdout: {e}")),
    }
}

fn encode(picture: &RgbImage, format: image::ImageFormat) -> Result<Vec<u8>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut bytes, format)?;
    Ok(bytes.into_inner())
}

/// Pictures whose output files would have the same name: each pair as a message.
fn clashing_outputs(pictures: &[Picture]) -> Vec<String> {
    let mut first: HashMap<PathBuf, &Path> = HashMap::new();
    let mut clashes = Vec::new();
    for picture in pictures {
        let stem = picture.relative.with_extension("");
        if let Some(other) = first.insert(stem.clone(), &picture.path) {
            clashes.push(format!(
                "{} and {} would both write {}.*: caption them in separate runs",
                other.display(),
                picture.path.display(),
                stem.display()
            ));
        }
    }
    clashes
}

fn main() -> ExitCode {
    captioner::keep_freed_memory();
    let args = Args::parse();
    let (pictures, problems) = collect(&args.inputs, &mut std::io::stdin().lock());
    for problem in &problems {
        eprintln!("error: {problem} (skipped)");
    }
    if args.out.is_some() || args.attention_dir.is_some() {
        let clashes = clashing_outputs(&pictures);
        if !clashes.is_empty() {
            for clash in clashes {
                eprintln!("error: {clash}");
            }
            return ExitCode::from(2);
        }
    }
    if pictures.is_empty() {
        eprintln!("error: no pictures to caption");
        return ExitCode::from(1);
    }
    let device = args.device;
    let summary = match run_chosen(device, InferJob { args, pictures }) {
        Ok(summary) => summary,
        Err(e) => return captioner::report_error(&e, 2),
    };
    if summary.stdout_closed {
        return ExitCode::SUCCESS;
    }
    let failed = summary.unreadable + problems.len();
    if failed > 0 {
        eprintln!(
            "{failed} input{} could not be captioned ({} captioned)",
            if failed == 1 { "" } else { "s" },
            summary.captioned
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

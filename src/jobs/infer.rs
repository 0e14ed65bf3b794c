//! Captioning pictures with a trained run (the `infer` binary's job): captions printed or
//! written as they come, attention grids, the HTML page.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::image::{load_rgb, RgbImage};
use captioner_datasets::progress::Progress;
use captioner_model::{Batching, Ensemble, Prepared, SearchConfig};
use rayon::prelude::*;

use crate::attention_image::attention_grid;
use crate::device::{run_chosen, BackendJob, DeviceKind, Target};
use crate::pictures::Picture;
use crate::report::{dominant_caption, html_page, page_title, Described, PageEntry};
use crate::write_file;

/// What a run of `infer` did.
pub struct Summary {
    /// Pictures captioned.
    pub captioned: usize,
    /// Pictures that could not be read (each said on stderr).
    pub unreadable: usize,
    /// Stdout was closed early (`infer ... | head`): captioning stopped there.
    pub stdout_closed: bool,
}

/// Pictures to caption with a trained run, and where the captions go.
pub struct InferJob {
    /// The run or export folders of the models, which caption together when there are
    /// several (an ensemble).
    pub models: Vec<PathBuf>,
    /// The inputs as given (files, folders, `-`), for the title of the HTML page.
    pub inputs: Vec<PathBuf>,
    /// The pictures found in them, in order.
    pub pictures: Vec<Picture>,
    /// How captions are searched for.
    pub search: SearchConfig,
    /// No two-word phrase twice in a caption ([`Ensemble::blocking_repeats`]).
    pub block_repeats: bool,
    /// No caption ending on a cut ending ([`Ensemble::blocking_cut_endings`]).
    pub block_cut_endings: bool,
    /// Print one JSON line a picture instead of `path<TAB>caption`.
    pub json: bool,
    /// Write each caption to `<folder>/<relative path>.txt` instead of printing it.
    pub out: Option<PathBuf>,
    /// Write each picture's attention grid to `<folder>/<relative path>.png`.
    pub attention_dir: Option<PathBuf>,
    /// Write one self-contained HTML page of every picture.
    pub html: Option<PathBuf>,
    /// Pictures read and captioned together.
    pub batch_size: usize,
}

impl BackendJob for InferJob {
    type Output = Summary;
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Summary> {
        let models = Ensemble::<B::InnerBackend>::load(&self.models, &target.device)?;
        let run = Ensemble::new(&self.models, &models)?
            .blocking_repeats(self.block_repeats)
            .blocking_cut_endings(self.block_cut_endings)?;
        let search = self.search;
        let batching = Batching {
            batch_size: self.batch_size,
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
            let mut ready: Vec<(&Picture, Prepared)> = Vec::with_capacity(chunk.len());
            for (picture, read) in chunk.iter().zip(read) {
                match read {
                    Ok(prepared) => ready.push((picture, prepared)),
                    Err(e) => {
                        progress.say(&format!("error: {e} (skipped)"));
                        summary.unreadable += 1;
                    }
                }
            }
            let prepared: Vec<&Prepared> = ready.iter().map(|(_, p)| p).collect();
            let found = run.caption_prepared(&prepared, &search, batching, false);
            for ((picture, prepared), caption) in ready.iter().zip(found) {
                let described = Described::new(&caption, run.vocab());
                if self.json {
                    let mut line = serde_json::to_value(&described)?;
                    line["image"] = picture.path.display().to_string().into();
                    if !print(&mut stdout, &format!("{line}"))? {
                        summary.stdout_closed = true;
                        break 'batches;
                    }
                } else if self.out.is_none()
                    && !print(
                        &mut stdout,
                        &format!("{}\t{}", picture.path.display(), described.caption),
                    )?
                {
                    summary.stdout_closed = true;
                    break 'batches;
                }
                if let Some(out) = &self.out {
                    let path = out.join(&picture.relative).with_extension("txt");
                    write_file(&path, format!("{}\n", described.caption).as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                if self.attention_dir.is_some() || self.html.is_some() {
                    let words: Vec<&str> = described.tokens.iter().map(String::as_str).collect();
                    let name = picture.relative.display().to_string();
                    let grid = attention_grid(prepared.first(), &name, &words, &caption.alphas)
                        .with_context(|| format!("{}: cannot draw its attention", name))?;
                    if let Some(dir) = &self.attention_dir {
                        let path = dir.join(&picture.relative).with_extension("png");
                        write_file(&path, &encode(&grid, image::ImageFormat::Png)?)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                    }
                    if self.html.is_some() {
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
        if let Some(html) = &self.html {
            let inputs: Vec<String> = self
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
                "Captioned {} picture{} in {seconds:.2} s ({:.1} ms a picture, beam {}{})",
                summary.captioned,
                if summary.captioned == 1 { "" } else { "s" },
                1000.0 * seconds / summary.captioned as f64,
                search.beam_size,
                match models.len() {
                    1 => String::new(),
                    n => format!(", {n} models"),
                }
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

/// Captions `job`'s pictures on the backend `device` asks for (said on stderr first).
#[inline(never)]
pub fn run(device: DeviceKind, job: InferJob) -> Result<Summary> {
    run_chosen(device, job)
}

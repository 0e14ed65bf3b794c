//! Loading the ImageNet weights that torchvision publishes (`.pth`, or `.safetensors` with the
//! same keys) into our encoders, with errors that name what does not fit.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{ApplyError, ApplyResult, ModuleSnapshot, PytorchStore, SafetensorsStore};

/// Keys of a torchvision file that an encoder has no use for: the classifier, Inception's
/// auxiliary head and BatchNorm's step counters.
fn is_expected_unused(key: &str) -> bool {
    key.starts_with("fc.") || key.starts_with("AuxLogits.") || key.ends_with("num_batches_tracked")
}

/// Why a weights file could not be loaded.
#[derive(Debug)]
pub enum WeightsError {
    /// The file could not be read as a PyTorch or safetensors file.
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// The file's tensors do not fit the network.
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The network it was loaded into, e.g. "resnet50".
        network: String,
        /// Tensors of the network that the file lacks.
        missing: Vec<String>,
        /// Tensors whose shape differs, as `name: network [..], file [..]`.
        misshaped: Vec<String>,
        /// Tensors of the file that the network has no place for.
        unexpected: Vec<String>,
    },
}

/// At most five names, then how many more.
fn some_of(names: &[String]) -> String {
    let mut text = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

impl std::fmt::Display for WeightsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightsError::Read { path, message } => write!(
                f,
                "cannot read the weights {}: {message}\n(expected torchvision's .pth file or a \
                 .safetensors file with the same keys)",
                path.display()
            ),
            WeightsError::Mismatch {
                path,
                network,
                missing,
                misshaped,
                unexpected,
            } => {
                write!(f, "the weights {} do not fit {network}:", path.display())?;
                if !misshaped.is_empty() {
                    write!(
                        f,
                        "\n  wrong shape ({}): {}",
                        misshaped.len(),
                        some_of(misshaped)
                    )?;
                }
                if !missing.is_empty() {
                    write!(f, "\n  missing ({}): {}", missing.len(), some_of(missing))?;
                }
                if !unexpected.is_empty() {
                    write!(
                        f,
                        "\n  not in {network} ({}): {}",
                        unexpected.len(),
                        some_of(unexpected)
                    )?;
                }
                write!(
                    f,
                    "\nIs it the file of another network? Check --encoder against the file name."
                )
            }
        }
    }
}

impl std::error::Error for WeightsError {}

/// What a successful load did.
#[derive(Debug, Clone)]
pub struct LoadedWeights {
    /// Tensors copied into the network.
    pub applied: usize,
    /// Tensors of the file that were left out (classifier head, step counters).
    pub ignored: usize,
}

/// Loads `path` into `module` (named `network` in errors), after renaming the file's keys with
/// the regex pairs `remaps`. Every tensor of the network must be in the file with its shape;
/// the file may hold more only where [`is_expected_unused`] allows.
pub fn load_torchvision<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    remaps: &[(&str, &str)],
    network: &str,
) -> Result<LoadedWeights, WeightsError> {
    let read_error = |message: String| WeightsError::Read {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(read_error("no such file".into()));
    }
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let result: ApplyResult = if is_safetensors {
        let mut store = remaps.iter().fold(
            SafetensorsStore::from_file(path)
                .allow_partial(true)
                .validate(false)
                .skip_enum_variants(true),
            |store, (from, to)| store.with_key_remapping(*from, *to),
        );
        module
            .load_from(&mut store)
            .map_err(|e| read_error(e.to_string()))?
    } else {
        let mut store = remaps.iter().fold(
            PytorchStore::from_file(path)
                .allow_partial(true)
                .validate(false),
            |store, (from, to)| store.with_key_remapping(*from, *to),
        );
        module
            .load_from(&mut store)
            .map_err(|e| read_error(e.to_string()))?
    };

    let misshaped: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "{path}: {network} has {:?}, the file {:?}",
                expected.as_slice(),
                found.as_slice()
            ),
            other => other.to_string(),
        })
        .collect();
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    let (ignored, unexpected): (Vec<String>, Vec<String>) = result
        .unused
        .iter()
        .cloned()
        .partition(|k| is_expected_unused(k));
    if !misshaped.is_empty() || !missing.is_empty() || !unexpected.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            network: network.to_string(),
            missing,
            misshaped,
            unexpected,
        });
    }
    Ok(LoadedWeights {
        applied: result.applied.len(),
        ignored: ignored.len(),
    })
}

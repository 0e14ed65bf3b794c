//! A model as one `.safetensors` file, the format models are shared in: its tensors named as
//! a PyTorch user reads them (`decoder.attention.encoder_att.weight`, linear weights
//! `[out, in]`, batch norm's `weight`/`bias`), stored in f32, f16, or f16 for the decoder
//! alone, with metadata that says what the model takes. f16 tensors are widened to f32 as
//! they are read, so every file loads on every backend.

use std::collections::HashMap;
use std::path::Path;

use captioner_datasets::Vocab;
use sha2::{Digest, Sha256};

use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::captioner::Captioner;
use crate::torchvision_weights::misfit;
use crate::weights_file::LoadError;

/// How the floats of an exported model are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// As trained.
    F32,
    /// Every tensor in f16: half the size. The encoder's rounding errors grow through its
    /// layers, so some captions differ from f32's.
    F16,
    /// The decoder in f16, the encoder in f32: the decoder's share of the size halved, the
    /// encoder's features as f32 computes them.
    F16Decoder,
}

captioner_datasets::named_values!(Precision: F32 = "f32", F16 = "f16", F16Decoder = "f16-decoder");

impl Precision {
    /// Whether the tensor named `name` (as the file names it) is stored in f16.
    pub fn halves(self, name: &str) -> bool {
        match self {
            Precision::F32 => false,
            Precision::F16 => true,
            Precision::F16Decoder => name.starts_with("decoder."),
        }
    }
}

/// The bytes of a `.safetensors` file of `model`, its floats in `precision`, with `metadata`.
pub fn to_safetensors<B: Backend>(
    model: &Captioner<B>,
    precision: Precision,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true);
    for (key, value) in metadata {
        store = store.metadata(key.clone(), value.clone());
    }
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    let bytes = store.get_bytes().map_err(|e| e.to_string())?;
    match precision {
        Precision::F32 => Ok(bytes),
        _ => recode(&bytes, Dtype::F32, Dtype::F16, |name| {
            precision.halves(name)
        }),
    }
}

/// The hash of a vocabulary, kept in an export's metadata (`vocab_sha256`) so that a
/// `vocab.json` of another model is refused: SHA-256 of its words in id order, one a line.
pub fn vocab_hash(vocab: &Vocab) -> String {
    let mut hasher = Sha256::new();
    for id in 0..vocab.len() as u32 {
        hasher.update(vocab.word(id).as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The metadata of the `.safetensors` file held in `bytes`.
pub fn metadata_of(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

/// The metadata of the `.safetensors` file at `path`, read from its header alone (not its
/// tensors).
pub fn metadata_of_file(path: &Path) -> Result<HashMap<String, String>, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(|e| e.to_string())?;
    // safetensors' own bound on a header.
    let length = u64::from_le_bytes(length);
    if length > 100_000_000 {
        return Err(format!("a header of {length} bytes"));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| e.to_string())?;
    match header.get("__metadata__") {
        None => Ok(HashMap::new()),
        Some(metadata) => serde_json::from_value(metadata.clone()).map_err(|e| e.to_string()),
    }
}

/// `model` with the weights of the `.safetensors` file at `path` (written by
/// [`to_safetensors`], in f32 or f16). Every tensor of the model must be in the file, with its
/// shape, and the file must hold nothing else; when its metadata has the hash of a
/// vocabulary, `vocab` (read from `vocab_path`) must be that one.
pub fn load_safetensors<B: Backend>(
    mut model: Captioner<B>,
    path: &Path,
    vocab: &Vocab,
    vocab_path: &Path,
) -> Result<Captioner<B>, LoadError> {
    let fail = |why: String| LoadError(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let unreadable = |e: String| {
        fail(format!(
            "not a readable safetensors file ({e}): export the model again"
        ))
    };
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| unreadable(e.to_string()))?;
    let half = tensors.iter().any(|(_, view)| view.dtype() == Dtype::F16);
    drop(tensors);
    let metadata = metadata_of(&bytes).map_err(unreadable)?;
    if metadata
        .get("vocab_sha256")
        .is_some_and(|hash| *hash != vocab_hash(vocab))
    {
        return Err(LoadError(format!(
            "{}: its words are not those {} was trained with (vocab_sha256 in its metadata): \
             the files come from different exports",
            vocab_path.display(),
            path.display()
        )));
    }
    let bytes = match half {
        true => recode(&bytes, Dtype::F16, Dtype::F32, |_| true).map_err(unreadable)?,
        false => bytes,
    };
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut wrong: Vec<String> = result
        .errors
        .iter()
        .map(|e| misfit(e, "the model"))
        .collect();
    wrong.extend(
        result
            .missing
            .iter()
            .map(|(p, _)| format!("{p} is missing")),
    );
    // A norm layer's `weight` and `bias` are applied to its `gamma` and `beta` under those
    // names, and still listed as unused.
    let applied_as = |key: &str| {
        let burn = key
            .strip_suffix(".weight")
            .map(|p| format!("{p}.gamma"))
            .or_else(|| key.strip_suffix(".bias").map(|p| format!("{p}.beta")));
        burn.is_some_and(|b| result.applied.contains(&b))
    };
    wrong.extend(
        result
            .unused
            .iter()
            .filter(|key| !applied_as(key))
            .map(|key| format!("{key} is not in the model")),
    );
    if !wrong.is_empty() {
        let shown: Vec<&str> = wrong.iter().take(5).map(String::as_str).collect();
        let more = wrong.len().saturating_sub(shown.len());
        return Err(fail(format!(
            "its tensors do not fit the model that config.json describes ({}{}): the files \
             come from different exports",
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        )));
    }
    Ok(model)
}

/// The safetensors file `bytes` with its `from` tensors whose names pass `which` stored as
/// `to` (f32 and f16 either way); other tensors and the metadata as they are.
fn recode(
    bytes: &[u8],
    from: Dtype,
    to: Dtype,
    which: impl Fn(&str) -> bool,
) -> Result<Vec<u8>, String> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let metadata = metadata_of(bytes)?;
    let mut recoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.iter() {
        let data = view.data();
        let (dtype, data) = match (view.dtype(), from, to) {
            (dtype, _, _) if dtype != from || !which(name) => (dtype, data.to_vec()),
            (_, Dtype::F32, Dtype::F16) => (
                to,
                data.chunks_exact(4)
                    .flat_map(|c| {
                        let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        f16::from_f32(x).to_le_bytes()
                    })
                    .collect(),
            ),
            (_, Dtype::F16, Dtype::F32) => (
                to,
                data.chunks_exact(2)
                    .flat_map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
                    .collect(),
            ),
            _ => return Err(format!("cannot store {from:?} as {to:?}")),
        };
        recoded.push((name.to_string(), dtype, view.shape().to_vec(), data));
    }
    let views = recoded
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackboneConfig, DecoderConfig, EncoderConfig, SmallCnnConfig};
    use burn::backend::NdArray;

    type Cpu = NdArray;

    fn model(vocab: usize) -> Captioner<Cpu> {
        let encoder = SmallCnnConfig::new().with_image_size(16);
        let decoder = DecoderConfig::new(vocab, encoder.feature_dim())
            .with_embed_dim(16)
            .with_attention_dim(16)
            .with_hidden_dim(32);
        crate::CaptionerConfig::new(EncoderConfig::SmallCnn(encoder), decoder)
            .init(&Default::default())
    }

    fn vocab() -> Vocab {
        Vocab::build(["a red circle", "a blue square"], 1)
    }

    /// Every float of a model, in module order.
    fn floats(model: &Captioner<Cpu>) -> Vec<f32> {
        let mut all = Vec::new();
        for tensor in model.collect(None, None, true) {
            let data = tensor.to_data().unwrap().convert::<f32>();
            all.extend(data.to_vec::<f32>().unwrap());
        }
        all
    }

    fn write(dir: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("export-{dir}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn an_exported_model_loads_back_exactly_in_f32_and_within_f16_rounding_in_f16() {
        let vocab = vocab();
        let saved = model(vocab.len());
        let metadata = HashMap::from([("vocab_sha256".to_string(), vocab_hash(&vocab))]);
        for (precision, tolerance) in [(Precision::F32, 0.0), (Precision::F16, 1e-3)] {
            let bytes = to_safetensors(&saved, precision, &metadata).unwrap();
            assert_eq!(
                metadata_of(&bytes).unwrap()["vocab_sha256"],
                vocab_hash(&vocab)
            );
            let path = write(&format!("{precision:?}"), &bytes);
            let loaded =
                load_safetensors(model(vocab.len()), &path, &vocab, Path::new("vocab.json"))
                    .unwrap();
            let (want, got) = (floats(&saved), floats(&loaded));
            assert_eq!(want.len(), got.len());
            for (w, g) in want.iter().zip(&got) {
                assert!(
                    (w - g).abs() <= tolerance * w.abs().max(1e-2),
                    "{precision:?}: {w} {g}"
                );
            }
            std::fs::remove_dir_all(path.parent().unwrap()).ok();
        }
    }

    #[test]
    fn f16_decoder_halves_the_decoder_and_keeps_the_encoder_exact() {
        let vocab = vocab();
        let saved = model(vocab.len());
        let bytes = to_safetensors(&saved, Precision::F16Decoder, &HashMap::new()).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in tensors.iter() {
            let want = match name.starts_with("decoder.") {
                true => Dtype::F16,
                false => Dtype::F32,
            };
            assert_eq!(view.dtype(), want, "{name}");
        }
        assert!(tensors.names().iter().any(|n| n.starts_with("encoder.")));
        let path = write("f16-decoder", &bytes);
        let loaded =
            load_safetensors(model(vocab.len()), &path, &vocab, Path::new("vocab.json")).unwrap();
        let encoder = |m: &Captioner<Cpu>| {
            let mut all = Vec::new();
            for tensor in m.encoder.clone().collect(None, None, true) {
                all.extend(
                    tensor
                        .to_data()
                        .unwrap()
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .unwrap(),
                );
            }
            all
        };
        assert_eq!(encoder(&loaded), encoder(&saved));
        assert_ne!(floats(&loaded), floats(&saved));
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn tensors_are_named_and_shaped_as_pytorch_has_them() {
        let saved = model(vocab().len());
        let bytes = to_safetensors(&saved, Precision::F16, &HashMap::new()).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let names: Vec<String> = tensors.names().into_iter().map(String::from).collect();
        let output = tensors.tensor("decoder.output.weight").unwrap();
        // nn.Linear(hidden, vocab).weight is [out, in].
        assert_eq!(output.shape(), [vocab().len(), 32], "{names:?}");
        assert_eq!(output.dtype(), Dtype::F16);
        assert!(names.iter().all(|n| !n.contains("SmallCnn")), "{names:?}");
    }

    #[test]
    fn a_truncated_file_or_another_vocabulary_is_refused_with_the_file_named() {
        let vocab = vocab();
        let saved = model(vocab.len());
        let metadata = HashMap::from([("vocab_sha256".to_string(), vocab_hash(&vocab))]);
        let bytes = to_safetensors(&saved, Precision::F32, &metadata).unwrap();
        let path = write("truncated", &bytes[..bytes.len() / 2]);
        // The header alone is read for the metadata, even of a file cut short.
        assert_eq!(
            metadata_of_file(&path).unwrap(),
            metadata_of(&bytes).unwrap()
        );
        let err = load_safetensors(model(vocab.len()), &path, &vocab, Path::new("vocab.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: not a readable safetensors file",
                path.display()
            )),
            "{err}"
        );
        std::fs::write(&path, &bytes).unwrap();
        let other = Vocab::build(["a red circle", "a green square"], 1);
        let err = load_safetensors(model(other.len()), &path, &other, Path::new("v/vocab.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("v/vocab.json: its words are not those"),
            "{err}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }
}

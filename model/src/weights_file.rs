//! The file format of weights and checkpoints: Burn's named MessagePack at full precision
//! (what `NamedMpkFileRecorder<FullPrecisionSettings>` reads and writes, byte for byte), but
//! written whole or not at all ([`captioner_datasets::files`]) and read back with a message
//! that says when a file is truncated or corrupt.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::record::{FileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a run folder cannot caption, in words that say which file and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// The recorder of final weights and checkpoints (burn-train's checkpointer writes through
/// it too, so every checkpoint file is complete or absent).
#[derive(Debug, Default, Clone)]
pub struct WeightsRecorder {
    /// Files read in place of others: `(asked for, read instead)`, without extensions.
    substitutes: Vec<(PathBuf, PathBuf)>,
}

impl WeightsRecorder {
    /// The recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `instead` whenever `asked` is loaded (paths without the extension); saving is
    /// unchanged. A run resumed mid-epoch hands burn-train, which resumes only from an epoch's
    /// checkpoint, the files of the step it stopped at under the previous epoch's names.
    pub fn reading_instead(mut self, asked: PathBuf, instead: PathBuf) -> Self {
        self.substitutes.push((asked, instead));
        self
    }
}

impl<B: Backend> FileRecorder<B> for WeightsRecorder {
    fn file_extension() -> &'static str {
        "mpk"
    }
}

impl<B: Backend> Recorder<B> for WeightsRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, file: PathBuf) -> Result<(), RecorderError> {
        let path = file.with_extension(<Self as FileRecorder<B>>::file_extension());
        captioner_datasets::files::write_with(&path, |writer| {
            rmp_serde::encode::write_named(writer, &item).map_err(std::io::Error::other)
        })
        .map_err(|e| RecorderError::Unknown(format!("cannot write {}: {e}", path.display())))
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        let extension = <Self as FileRecorder<B>>::file_extension();
        let path = file.with_extension(extension);
        let path = match self
            .substitutes
            .iter()
            .find(|(asked, _)| asked.with_extension(extension) == path)
        {
            Some((_, instead)) => instead.with_extension(extension),
            None => path,
        };
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                RecorderError::FileNotFound(format!("{} is missing", path.display()))
            }
            _ => RecorderError::Unknown(format!("cannot read {}: {e}", path.display())),
        })?;
        rmp_serde::from_slice(&bytes)
            .map_err(|e| RecorderError::DeserializeError(corrupt(&path, e)))
    }
}

/// What to say of a weights file that does not decode.
fn corrupt(path: &Path, error: rmp_serde::decode::Error) -> String {
    use rmp_serde::decode::Error;
    // Burn's own deserialiser passes the reader's error on as text, with a note about its
    // format's history after it.
    let text = error.to_string();
    let cut_short = match &error {
        Error::InvalidMarkerRead(e) | Error::InvalidDataRead(e) => {
            e.kind() == std::io::ErrorKind::UnexpectedEof
        }
        _ => text.contains("UnexpectedEof"),
    };
    if cut_short {
        format!(
            "{} is truncated (it ends in the middle of its data): it was not written to the end",
            path.display()
        )
    } else {
        let first_line = text.lines().next().unwrap_or_default();
        format!(
            "{} is corrupt or not a weights file ({first_line})",
            path.display()
        )
    }
}

/// Whether the file at `path` (with the `.mpk` extension added) is a complete weights or
/// checkpoint file: it decodes to the end. Says why not.
pub fn check_complete(path: &Path) -> Result<(), LoadError> {
    let path = path.with_extension("mpk");
    let bytes = std::fs::read(&path)
        .map_err(|e| LoadError(format!("cannot read {}: {e}", path.display())))?;
    rmp_serde::from_slice::<serde::de::IgnoredAny>(&bytes)
        .map(|_| ())
        .map_err(|e| LoadError(corrupt(&path, e)))
}

/// A recorder's error as a sentence: this recorder's own messages name the file already;
/// Burn's own variants print as `Unknown("...")`.
pub fn recorder_message(error: RecorderError) -> String {
    match error {
        RecorderError::FileNotFound(m)
        | RecorderError::DeserializeError(m)
        | RecorderError::Unknown(m) => m,
    }
}

/// The shapes of a module's float parameters, in module order.
struct Shapes(Vec<Vec<usize>>);

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

/// The first parameter whose shape in `loaded` differs from `expected`'s (a model freshly
/// made from its config): its position and both shapes. Burn loads a record of any shape
/// into a parameter; this is the check that the weights fit the config.
pub fn shape_mismatch<B: Backend, M: Module<B>>(
    expected: &M,
    loaded: &M,
) -> Option<(usize, Vec<usize>, Vec<usize>)> {
    let (mut want, mut got) = (Shapes(Vec::new()), Shapes(Vec::new()));
    expected.visit(&mut want);
    loaded.visit(&mut got);
    want.0
        .into_iter()
        .zip(got.0)
        .enumerate()
        .find(|(_, (w, g))| w != g)
        .map(|(i, (w, g))| (i, w, g))
}

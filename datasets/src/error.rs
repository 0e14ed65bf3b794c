//! Errors that stop a dataset from loading at all (as opposed to [`crate::problems`], which
//! are skipped): each names the file, and the line where there is one.

use std::path::{Path, PathBuf};

/// Why a dataset cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A JSON annotation file does not have the expected shape.
    #[error("{}:{line}:{column}: not a {expected} file: {reason}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the file should have been.
        expected: &'static str,
        /// serde's reason.
        reason: String,
    },
    /// No known annotation file in the data folder.
    #[error("{}: {what}", dir.display())]
    NotFound {
        /// The data folder.
        dir: PathBuf,
        /// What was looked for, and what to do.
        what: String,
    },
    /// Problems found under `--strict`.
    #[error("{count} problem(s) in the dataset (run without --strict to skip them):\n{summary}")]
    Strict {
        /// How many.
        count: usize,
        /// Their listing.
        summary: String,
    },
}

impl DatasetError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads a whole text file, naming it on failure (invalid UTF-8 is replaced, not fatal: the
/// caption files of the wild hold a few stray bytes).
pub(crate) fn read_text(path: &Path) -> Result<String, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses the JSON file at `path` into `T`, naming the file, line and column on failure.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    expected: &'static str,
) -> Result<T, DatasetError> {
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| DatasetError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        expected,
        reason: {
            let reason = e.to_string();
            match reason.rfind(" at line ") {
                Some(at) => reason[..at].to_string(),
                None => reason,
            }
        },
    })
}

//! What was wrong with a dataset on disk: every problem names its file (and line, where there
//! is one), is counted by kind, and is skipped, or turned into an error under `--strict`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The kinds of problem a dataset can have; each is skipped (the line, caption or image) when
/// the run is not strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A line that does not have the format's shape (no tab, no comma, no `#N`).
    MalformedLine,
    /// A caption names a file that is not an image (e.g. `2258277193_586949ec62.jpg.1`).
    BadImageName,
    /// A caption with no words.
    EmptyCaption,
    /// A caption longer than the longest kept.
    LongCaption,
    /// An image of a split that is not on disk.
    MissingImage,
    /// An image on disk that cannot be decoded (truncated, not an image).
    UnreadableImage,
    /// An image of a split without any caption.
    NoCaption,
}

impl ProblemKind {
    /// A short plural description for summaries.
    pub fn describe(self) -> &'static str {
        match self {
            ProblemKind::MalformedLine => "malformed lines",
            ProblemKind::BadImageName => "captions of a file name that is not an image",
            ProblemKind::EmptyCaption => "empty captions",
            ProblemKind::LongCaption => "captions longer than --max-caption-len",
            ProblemKind::MissingImage => "images missing on disk",
            ProblemKind::UnreadableImage => "unreadable images",
            ProblemKind::NoCaption => "images without a caption",
        }
    }
}

/// One problem, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The file it is in (or the image file itself).
    pub file: PathBuf,
    /// 1-based line number in `file`, where there is one.
    pub line: Option<usize>,
    /// Details for the user.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a dataset, in the order found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    /// Records a problem.
    pub fn push(
        &mut self,
        kind: ProblemKind,
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) {
        self.list.push(Problem {
            kind,
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: Problems) {
        self.list.extend(other.list);
    }

    /// All problems.
    pub fn list(&self) -> &[Problem] {
        &self.list
    }

    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// How many problems of each kind.
    pub fn counts(&self) -> BTreeMap<ProblemKind, usize> {
        let mut counts = BTreeMap::new();
        for p in &self.list {
            *counts.entry(p.kind).or_default() += 1;
        }
        counts
    }

    /// Number of problems of `kind`.
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.list.iter().filter(|p| p.kind == kind).count()
    }

    /// A report for the user: the count of each kind and up to `examples` problems of each.
    pub fn summary(&self, examples: usize) -> String {
        let mut out = String::new();
        for (kind, n) in self.counts() {
            out.push_str(&format!("  {n} {}\n", kind.describe()));
            for p in self.list.iter().filter(|p| p.kind == kind).take(examples) {
                out.push_str(&format!("      {p}\n"));
            }
            if n > examples {
                out.push_str(&format!("      ... and {} more\n", n - examples));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_by_kind_and_names_file_and_line() {
        let mut problems = Problems::default();
        let file = Path::new("data/captions.txt");
        for line in 1..=4 {
            problems.push(ProblemKind::MalformedLine, file, Some(line), "no tab");
        }
        problems.push(
            ProblemKind::MissingImage,
            Path::new("img/a.jpg"),
            None,
            "not found",
        );
        assert_eq!(problems.count(ProblemKind::MalformedLine), 4);
        let summary = problems.summary(2);
        assert!(summary.contains("4 malformed lines"), "{summary}");
        assert!(summary.contains("data/captions.txt:2: no tab"), "{summary}");
        assert!(!summary.contains("data/captions.txt:3:"), "{summary}");
        assert!(summary.contains("... and 2 more"), "{summary}");
        assert!(summary.contains("img/a.jpg: not found"), "{summary}");
    }
}

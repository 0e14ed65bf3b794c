//! What was wrong with a dataset on disk: every problem names its file (and line, where there
//! is one), is counted by kind, and is skipped, or turned into an error under `--strict`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::split::Split;

/// The kinds of problem a dataset can have; each is skipped (the line, caption or image) when
/// the run is not strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A line that does not have the format's shape (no tab, no comma, no `#N`).
    MalformedLine,
    /// A caption names a file that is not an image (e.g. `2258277193_586949ec62.jpg.1`).
    BadImageName,
    /// A caption names a file outside the data folder (an absolute path, or `..`).
    OutsideDataFolder,
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

/// `n` and the noun of `n` things: `1 image`, `2 images`, `0 images`.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl ProblemKind {
    /// A short singular description: what one problem of the kind is.
    pub fn describe_one(self) -> &'static str {
        match self {
            ProblemKind::MalformedLine => "malformed line",
            ProblemKind::BadImageName => "caption of a file name that is not an image",
            ProblemKind::OutsideDataFolder => "caption of a file outside the data folder",
            ProblemKind::EmptyCaption => "empty caption",
            ProblemKind::LongCaption => "caption longer than --max-caption-len",
            ProblemKind::MissingImage => "image missing on disk",
            ProblemKind::UnreadableImage => "unreadable image",
            ProblemKind::NoCaption => "image without a caption",
        }
    }

    /// A short plural description for summaries (and the keys of a run's report).
    pub fn describe(self) -> &'static str {
        match self {
            ProblemKind::MalformedLine => "malformed lines",
            ProblemKind::BadImageName => "captions of a file name that is not an image",
            ProblemKind::OutsideDataFolder => "captions of a file outside the data folder",
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
    /// The split of the image it concerns, where it concerns one image of a split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
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
            split: None,
        });
    }

    /// Records a problem of an image of `split` (counted by split in [`Self::summary`]).
    pub fn push_for(
        &mut self,
        split: Split,
        kind: ProblemKind,
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) {
        self.push(kind, file, line, message);
        self.list.last_mut().expect("just pushed").split = Some(split);
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
            let by_split: Vec<String> = Split::ALL
                .iter()
                .filter_map(|&split| {
                    let count = self
                        .list
                        .iter()
                        .filter(|p| p.kind == kind && p.split == Some(split))
                        .count();
                    (count > 0).then(|| format!("{} {count}", split.name()))
                })
                .collect();
            let by_split = match by_split.is_empty() {
                true => String::new(),
                false => format!(" ({})", by_split.join(", ")),
            };
            let what = counted(n, kind.describe_one(), kind.describe());
            out.push_str(&format!("  {what}{by_split}\n"));
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

    #[test]
    fn image_problems_are_counted_by_the_split_of_their_image() {
        let mut problems = Problems::default();
        let file = Path::new("captions.txt");
        for (split, line) in [(Split::Train, 1), (Split::Valid, 2), (Split::Train, 3)] {
            problems.push_for(split, ProblemKind::MissingImage, file, Some(line), "gone");
        }
        problems.push(ProblemKind::EmptyCaption, file, Some(4), "empty");
        let summary = problems.summary(1);
        assert!(
            summary.contains("  3 images missing on disk (train 2, dev 1)\n"),
            "{summary}"
        );
        assert!(summary.contains("  1 empty caption\n"), "{summary}");
    }
}

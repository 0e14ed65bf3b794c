//! A captioning dataset read from disk, whatever its format: image files, their split and their
//! captions, plus every problem met while reading it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::problems::{ProblemKind, Problems};
use crate::split::Split;
use crate::vocab::tokenize;

/// One image of a corpus with its captions (raw text, as in the annotation file).
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusImage {
    /// Where the picture is.
    pub path: PathBuf,
    /// Its split.
    pub split: Split,
    /// Its captions.
    pub captions: Vec<String>,
}

/// A dataset on disk, parsed and checked (annotation files and image presence; decoding comes
/// later).
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// The annotation file(s) it was read from, for messages.
    pub sources: Vec<PathBuf>,
    /// Images with at least one usable caption, in the order of the annotation file.
    pub images: Vec<CorpusImage>,
    /// Captioned images that belong to no split (left out).
    pub unsplit_images: usize,
    /// What was skipped, and why.
    pub problems: Problems,
}

impl Corpus {
    /// The images of `split`.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &CorpusImage> {
        self.images.iter().filter(move |i| i.split == split)
    }

    /// Number of images and captions of `split`.
    pub fn counts(&self, split: Split) -> (usize, usize) {
        self.split(split)
            .fold((0, 0), |(i, c), img| (i + 1, c + img.captions.len()))
    }

    /// Drops captions of more than `max_words` words from every split (each one counted as a
    /// problem), then images left without a caption.
    pub fn drop_long_captions(&mut self, max_words: usize) {
        for image in &mut self.images {
            let before = image.captions.len();
            image.captions.retain(|c| tokenize(c).len() <= max_words);
            for _ in image.captions.len()..before {
                self.problems.push(
                    ProblemKind::LongCaption,
                    &image.path,
                    None,
                    format!("a caption of more than {max_words} words"),
                );
            }
        }
        self.images.retain(|i| !i.captions.is_empty());
    }

    /// Keeps only the first `n` images of `split`, in the order of the annotation file (a
    /// quicker run on part of a dataset); the other splits are untouched.
    pub fn keep_first(&mut self, split: Split, n: usize) {
        let mut seen = 0;
        self.images.retain(|i| {
            if i.split != split {
                return true;
            }
            seen += 1;
            seen <= n
        });
    }

    /// Drops `bad` images (e.g. those that failed to decode).
    pub fn remove_images(&mut self, bad: &[PathBuf]) {
        let bad: std::collections::HashSet<&PathBuf> = bad.iter().collect();
        self.images.retain(|i| !bad.contains(&i.path));
    }
}

/// True when `name` looks like a picture file name (`.jpg`, `.jpeg` or `.png`, any case).
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"].iter().any(|e| lower.ends_with(e))
}

/// Whether `name` stays inside the folder it is joined onto: a relative path without `..`
/// (a subfolder such as COCO's `val2014/` is fine; `/etc/x.jpg`, `C:\\x.jpg` and
/// `../x.jpg` are not).
pub fn stays_inside(name: &str) -> bool {
    use std::path::Component;
    !name.starts_with(['/', '\\'])
        && !name.contains(':')
        && !name.split(['/', '\\']).any(|part| part == "..")
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Collects captions keyed by image file name, in order of first appearance, with the line of
/// the first caption of each (for messages), and turns them into a [`Corpus`].
#[derive(Debug, Default)]
pub(crate) struct CaptionTable {
    order: Vec<String>,
    entries: HashMap<String, (Option<usize>, Vec<String>)>,
}

impl CaptionTable {
    /// Adds a caption of image `name` read at `line` of `file` (`None` for JSON, where the
    /// image name locates it); empty captions and names that are not image files become
    /// problems instead.
    pub fn add(
        &mut self,
        name: &str,
        caption: &str,
        file: &Path,
        line: Option<usize>,
        problems: &mut Problems,
    ) {
        if !is_image_name(name) {
            problems.push(
                ProblemKind::BadImageName,
                file,
                line,
                format!("\"{name}\" is not an image file name (.jpg, .jpeg or .png)"),
            );
            return;
        }
        if !stays_inside(name) {
            problems.push(
                ProblemKind::OutsideDataFolder,
                file,
                line,
                format!(
                    "\"{name}\" points outside the data folder (an absolute path or ..): \
                     pictures are read from inside it only"
                ),
            );
            return;
        }
        if tokenize(caption).is_empty() {
            problems.push(
                ProblemKind::EmptyCaption,
                file,
                line,
                format!("empty caption for {name}"),
            );
            return;
        }
        let entry = self.entries.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            (line, Vec::new())
        });
        entry.1.push(caption.trim().to_string());
    }

    /// The image names, in order of first appearance.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Builds the corpus: `split_of` gives each name's split (`None`: in no split, left out),
    /// `image_dir` holds the files. Images of a split missing on disk become problems pointing
    /// at the line of their first caption in `file`.
    pub fn into_corpus(
        mut self,
        file: &Path,
        image_dir: &Path,
        split_of: impl Fn(&str) -> Option<Split>,
    ) -> Corpus {
        let mut corpus = Corpus {
            sources: vec![file.to_path_buf()],
            ..Corpus::default()
        };
        for name in &self.order {
            let (line, captions) = self.entries.remove(name).expect("every name has an entry");
            let Some(split) = split_of(name) else {
                corpus.unsplit_images += 1;
                continue;
            };
            let path = image_dir.join(name);
            if !path.is_file() {
                corpus.problems.push_for(
                    split,
                    ProblemKind::MissingImage,
                    file,
                    line,
                    format!("{name}: no such image in {}", image_dir.display()),
                );
                continue;
            }
            corpus.images.push(CorpusImage {
                path,
                split,
                captions,
            });
        }
        corpus
    }
}

/// A split for images that come without one: a deterministic function of the file name alone,
/// so that adding or reordering files never moves an image between splits. About one in eight
/// images goes to each of dev and test, at most 1000 each for large sets (Karpathy's sizes).
pub fn hashed_split(names: &[String]) -> HashMap<String, Split> {
    let hash = |s: &str| {
        // FNV-1a, 64 bits: stable across platforms and Rust versions.
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut by_hash: Vec<&String> = names.iter().collect();
    by_hash.sort_by_key(|n| (hash(n), n.as_str()));
    let eval = (names.len() / 8).min(1000);
    by_hash
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let split = if i < eval {
                Split::Test
            } else if i < 2 * eval {
                Split::Valid
            } else {
                Split::Train
            };
            (n.clone(), split)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_the_first_images_of_a_split_leaves_the_other_splits_and_the_order() {
        let image = |name: &str, split| CorpusImage {
            path: PathBuf::from(name),
            split,
            captions: vec!["a dog".into()],
        };
        let mut corpus = Corpus {
            images: vec![
                image("t1.jpg", Split::Train),
                image("v1.jpg", Split::Valid),
                image("t2.jpg", Split::Train),
                image("t3.jpg", Split::Train),
                image("v2.jpg", Split::Valid),
            ],
            ..Corpus::default()
        };
        corpus.keep_first(Split::Train, 2);
        let names: Vec<_> = corpus
            .images
            .iter()
            .map(|i| i.path.to_str().unwrap())
            .collect();
        assert_eq!(names, ["t1.jpg", "v1.jpg", "t2.jpg", "v2.jpg"]);
        corpus.keep_first(Split::Valid, 0);
        assert_eq!(corpus.counts(Split::Valid), (0, 0));
        assert_eq!(corpus.counts(Split::Train), (2, 2));
    }

    #[test]
    fn hashed_split_is_stable_and_sized() {
        let names: Vec<String> = (0..80).map(|i| format!("{i}.jpg")).collect();
        let a = hashed_split(&names);
        let mut reversed = names.clone();
        reversed.reverse();
        assert_eq!(a, hashed_split(&reversed));
        let count = |s| a.values().filter(|&&v| v == s).count();
        assert_eq!(
            (count(Split::Train), count(Split::Valid), count(Split::Test)),
            (60, 10, 10)
        );
    }

    #[test]
    fn table_skips_bad_names_empty_captions_and_paths_outside_the_data_folder() {
        let mut problems = Problems::default();
        let mut table = CaptionTable::default();
        let file = Path::new("captions.txt");
        table.add("a.jpg", "A dog.", file, Some(1), &mut problems);
        table.add("a.jpg.1", "A cat.", file, Some(2), &mut problems);
        table.add("b.png", " ... ", file, Some(3), &mut problems);
        table.add("a.jpg", "Two dogs", file, Some(4), &mut problems);
        table.add("../../etc/c.jpg", "A cat.", file, Some(5), &mut problems);
        table.add("/home/x/d.jpg", "A cat.", file, Some(6), &mut problems);
        table.add("val2014/e.jpg", "A cat.", file, Some(7), &mut problems);
        assert_eq!(table.names(), ["a.jpg", "val2014/e.jpg"]);
        assert_eq!(problems.count(ProblemKind::BadImageName), 1);
        assert_eq!(problems.count(ProblemKind::OutsideDataFolder), 2);
        assert_eq!(problems.list()[1].line, Some(3));
        let corpus = table.into_corpus(file, Path::new("/nonexistent"), |_| Some(Split::Train));
        assert!(corpus.images.is_empty());
        let missing = &corpus.problems.list()[0];
        assert_eq!(
            (missing.kind, missing.line),
            (ProblemKind::MissingImage, Some(1))
        );
    }
}

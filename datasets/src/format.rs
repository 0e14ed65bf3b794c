//! Which dataset and which file format a data folder holds, found from the files in it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coco::{find_annotations, load_coco};
use crate::corpus::Corpus;
use crate::error::DatasetError;
use crate::flickr::{find_file, load_flickr};
use crate::karpathy::load_karpathy;

/// The datasets captioner knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    /// The embedded synthetic dataset (no files).
    Shapes,
    /// Flickr8k (Hodosh et al. 2013).
    Flickr8k,
    /// Flickr30k (Young et al. 2014).
    Flickr30k,
    /// MS-COCO captions (Chen et al. 2015).
    Coco,
}

/// The annotation file formats captioner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `IMAGE#N<TAB>caption` token files of Flickr8k/Flickr30k, with Flickr8k's split lists.
    Flickr,
    /// Kaggle's `captions.txt` (`image,caption`) or Flickr30k's `results.csv`.
    Csv,
    /// `annotations/captions_{train,val}{2014,2017}.json`.
    Coco,
    /// Karpathy's `dataset_*.json` split files.
    Karpathy,
}

crate::named_values!(DatasetName: Shapes = "shapes", Flickr8k = "flickr8k", Flickr30k = "flickr30k", Coco = "coco");
crate::named_values!(Format: Flickr = "flickr", Csv = "csv", Coco = "coco", Karpathy = "karpathy");

impl DatasetName {
    /// The file names its annotations go by, per format.
    fn files(self, format: Format) -> &'static [&'static str] {
        use DatasetName::*;
        match (format, self) {
            (Format::Flickr, Flickr8k) => &["Flickr8k.token.txt"],
            (Format::Flickr, Flickr30k) => &["results_20130124.token"],
            (Format::Csv, Flickr8k) => &["captions.txt"],
            (Format::Csv, Flickr30k) => &["results.csv", "captions.txt"],
            (Format::Karpathy, Flickr8k) => &["dataset_flickr8k.json"],
            (Format::Karpathy, Flickr30k) => &["dataset_flickr30k.json"],
            (Format::Karpathy, Coco) => &["dataset_coco.json"],
            _ => &[],
        }
    }
}

/// One way to read a data folder: a format and its main annotation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The format.
    pub format: Format,
    /// Its main file (for COCO, the `annotations` folder).
    pub annotations: PathBuf,
}

/// Every readable annotation set in `root` (or its direct subfolders), for `dataset`, narrowed
/// to `format` when given.
pub fn candidates(
    root: &Path,
    dataset: Option<DatasetName>,
    format: Option<Format>,
) -> Vec<Located> {
    let datasets: Vec<DatasetName> = match dataset {
        Some(d) => vec![d],
        None => vec![
            DatasetName::Flickr8k,
            DatasetName::Flickr30k,
            DatasetName::Coco,
        ],
    };
    let formats = match format {
        Some(f) => vec![f],
        None => vec![Format::Karpathy, Format::Flickr, Format::Csv, Format::Coco],
    };
    let mut found = Vec::new();
    for &format in &formats {
        if format == Format::Coco {
            if datasets.contains(&DatasetName::Coco) && find_annotations(root).is_some() {
                found.push(Located {
                    format,
                    annotations: root.join("annotations"),
                });
            }
            continue;
        }
        for &d in &datasets {
            for name in d.files(format) {
                if let Some(path) = find_file(root, name) {
                    if !found.iter().any(|l: &Located| l.annotations == path) {
                        found.push(Located {
                            format,
                            annotations: path,
                        });
                    }
                }
            }
        }
    }
    found
}

/// Finds the one annotation set in `root` (see [`candidates`]); none or several is an error
/// that lists what was found and the `--format` that settles it.
pub fn detect(
    root: &Path,
    dataset: Option<DatasetName>,
    format: Option<Format>,
) -> Result<Located, DatasetError> {
    if !root.is_dir() {
        return Err(DatasetError::NotFound {
            dir: root.to_path_buf(),
            what: "no such folder: pass the folder that holds the dataset with --data-dir".into(),
        });
    }
    let mut found = candidates(root, dataset, format);
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DatasetError::NotFound {
            dir: root.to_path_buf(),
            what: format!(
                "no {} annotations found; expected one of Flickr8k.token.txt, results_20130124.token, \
                 captions.txt, results.csv, annotations/captions_train2014.json or dataset_*.json \
                 (here or one folder down)",
                dataset.map(|d| d.name()).unwrap_or("dataset")
            ),
        }),
        _ => Err(DatasetError::NotFound {
            dir: root.to_path_buf(),
            what: format!(
                "several annotation sets found, pick one with --format:\n{}",
                found
                    .iter()
                    .map(|l| format!("  --format {:<9} {}", l.format.name(), l.annotations.display()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }),
    }
}

/// Reads the dataset in `root` as `located` says.
pub fn load(root: &Path, located: &Located) -> Result<Corpus, DatasetError> {
    match located.format {
        Format::Flickr => load_flickr(root, &located.annotations, false),
        Format::Csv => load_flickr(root, &located.annotations, true),
        Format::Coco => load_coco(root),
        Format::Karpathy => load_karpathy(root, &located.annotations),
    }
}

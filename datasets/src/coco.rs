//! MS-COCO captions as published: `annotations/captions_{train,val}{2014,2017}.json` with the
//! pictures in `train2014/`, `val2014/` (or the 2017 folders). The newest year with both files
//! is read (a 2017 pair beside a stray 2014 file reads 2017). The train file is the train
//! split and the val file the dev split; COCO's test captions are not public, so the test split
//! stays empty (use the Karpathy split JSON for one).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::corpus::{CaptionTable, Corpus};
use crate::error::{read_json, DatasetError};
use crate::problems::Problems;
use crate::split::Split;

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    caption: String,
}

/// The caption files of the newest year under `root/annotations` that has both
/// (`captions_train{year}.json` and `captions_val{year}.json`): `(year, train file, val file)`;
/// otherwise the newest year with one of them, whose missing file [`load_coco`] names.
pub(crate) fn find_annotations(root: &Path) -> Option<(&'static str, PathBuf, PathBuf)> {
    let dir = root.join("annotations");
    let years = ["2017", "2014"].map(|year| {
        let train = dir.join(format!("captions_train{year}.json"));
        let val = dir.join(format!("captions_val{year}.json"));
        (year, train, val)
    });
    let complete = years
        .iter()
        .find(|(_, train, val)| train.is_file() && val.is_file());
    let partial = || {
        years
            .iter()
            .find(|(_, train, val)| train.is_file() || val.is_file())
    };
    complete.or_else(partial).cloned()
}

/// Reads one COCO caption file into `table`; image names are made relative to `root`
/// (`train2014/COCO_train2014_...jpg`).
fn read_file(
    path: &Path,
    folder: &str,
    table: &mut CaptionTable,
    problems: &mut Problems,
) -> Result<(), DatasetError> {
    let file: CocoFile = read_json(path, "COCO captions")?;
    let names: std::collections::HashMap<u64, &str> = file
        .images
        .iter()
        .map(|i| (i.id, i.file_name.as_str()))
        .collect();
    for (index, annotation) in file.annotations.iter().enumerate() {
        let Some(name) = names.get(&annotation.image_id) else {
            problems.push(
                crate::problems::ProblemKind::MalformedLine,
                path,
                None,
                format!(
                    "annotations[{index}] refers to image id {} that `images` lacks",
                    annotation.image_id
                ),
            );
            continue;
        };
        table.add(
            &format!("{folder}/{name}"),
            &annotation.caption,
            path,
            None,
            problems,
        );
    }
    Ok(())
}

/// Loads MS-COCO from `root` (which holds `annotations/` and the image folders).
pub fn load_coco(root: &Path) -> Result<Corpus, DatasetError> {
    let Some((year, train, val)) = find_annotations(root) else {
        return Err(DatasetError::NotFound {
            dir: root.to_path_buf(),
            what: "no annotations/captions_{train,val}{2014,2017}.json".into(),
        });
    };
    if let Some(missing) = [&train, &val].into_iter().find(|p| !p.is_file()) {
        return Err(DatasetError::NotFound {
            dir: root.to_path_buf(),
            what: format!(
                "{} is missing: COCO's train split comes from captions_train{year}.json and its \
                 dev split from captions_val{year}.json, and both are needed",
                missing.display()
            ),
        });
    }
    let mut corpus = Corpus::default();
    for (split, path, folder) in [
        (Split::Train, train, format!("train{year}")),
        (Split::Valid, val, format!("val{year}")),
    ] {
        let mut problems = Problems::default();
        let mut table = CaptionTable::default();
        read_file(&path, &folder, &mut table, &mut problems)?;
        let part = table.into_corpus(&path, root, |_| Some(split));
        corpus.sources.extend(part.sources);
        corpus.images.extend(part.images);
        problems.extend(part.problems);
        corpus.problems.extend(problems);
    }
    Ok(corpus)
}

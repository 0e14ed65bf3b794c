//! MS-COCO captions as published: `annotations/captions_{train,val}{2014,2017}.json` with the
//! pictures in `train2014/`, `val2014/` (or the 2017 folders). The train file is the train
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

/// The caption files of the newest complete year under `root/annotations`:
/// `(year, train file, val file)`.
pub(crate) fn find_annotations(root: &Path) -> Option<(&'static str, PathBuf, PathBuf)> {
    let dir = root.join("annotations");
    ["2014", "2017"].into_iter().find_map(|year| {
        let train = dir.join(format!("captions_train{year}.json"));
        let val = dir.join(format!("captions_val{year}.json"));
        (train.is_file() || val.is_file()).then_some((year, train, val))
    })
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
    let mut corpus = Corpus::default();
    for (split, path, folder) in [
        (Split::Train, train, format!("train{year}")),
        (Split::Valid, val, format!("val{year}")),
    ] {
        if !path.is_file() {
            continue;
        }
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

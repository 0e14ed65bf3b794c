//! Karpathy's split files (`dataset_flickr8k.json`, `dataset_flickr30k.json`,
//! `dataset_coco.json`): `images[].{filename, filepath?, split, sentences[].tokens}`, the split
//! that published results use; `restval` goes to train.

use std::path::Path;

use serde::Deserialize;

use crate::corpus::{CaptionTable, Corpus};
use crate::error::{read_json, DatasetError};
use crate::flickr::find_image_dir;
use crate::problems::{ProblemKind, Problems};
use crate::split::Split;

#[derive(Deserialize)]
struct KarpathyFile {
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    filename: String,
    #[serde(default)]
    filepath: Option<String>,
    split: String,
    sentences: Vec<KarpathySentence>,
}

#[derive(Deserialize)]
struct KarpathySentence {
    tokens: Vec<String>,
}

/// Loads the Karpathy split in `json`, with pictures under `root`: in `root/<filepath>/` for
/// COCO, in the usual Flickr folders otherwise.
pub fn load_karpathy(root: &Path, json: &Path) -> Result<Corpus, DatasetError> {
    let file: KarpathyFile = read_json(json, "Karpathy split")?;
    let mut problems = Problems::default();
    let mut table = CaptionTable::default();
    let mut splits = std::collections::HashMap::new();
    for (index, image) in file.images.iter().enumerate() {
        let split = match image.split.as_str() {
            "train" | "restval" => Split::Train,
            "val" => Split::Valid,
            "test" => Split::Test,
            other => {
                problems.push(
                    ProblemKind::MalformedLine,
                    json,
                    None,
                    format!(
                        "images[{index}] ({}): unknown split \"{other}\" (train, restval, val or test expected)",
                        image.filename
                    ),
                );
                continue;
            }
        };
        let name = match &image.filepath {
            Some(dir) if !dir.is_empty() => format!("{dir}/{}", image.filename),
            _ => image.filename.clone(),
        };
        if image.sentences.is_empty() {
            problems.push_for(
                split,
                ProblemKind::NoCaption,
                json,
                None,
                format!("images[{index}] ({name}): no sentences"),
            );
            continue;
        }
        for sentence in &image.sentences {
            table.add(&name, &sentence.tokens.join(" "), json, None, &mut problems);
        }
        splits.insert(name, split);
    }
    let has_filepath = file.images.iter().any(|i| i.filepath.is_some());
    let image_dir = if has_filepath {
        root.to_path_buf()
    } else {
        find_image_dir(root, json, table.names())
    };
    let mut corpus = table.into_corpus(json, &image_dir, |n| splits.get(n).copied());
    problems.extend(std::mem::take(&mut corpus.problems));
    corpus.problems = problems;
    Ok(corpus)
}

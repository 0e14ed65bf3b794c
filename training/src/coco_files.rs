//! The files of the coco-caption toolkit: results (`[{"image_id": .., "caption": ".."}]`) and
//! annotations (`{"images": [{"id": ..}], "annotations": [{"image_id": .., "caption": ".."}]}`),
//! read with errors that name the file, the line and the images at fault, and written so that
//! pycocoevalcap can score them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An image id as the files hold it: a number (COCO) or a string (a file name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageId {
    /// A numeric id.
    Number(u64),
    /// Any other id.
    Name(String),
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageId::Number(n) => write!(f, "{n}"),
            ImageId::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// One line of a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    /// The image captioned.
    pub image_id: ImageId,
    /// The caption, raw text.
    pub caption: String,
}

#[derive(Debug, Deserialize)]
struct AnnotationFile {
    #[serde(default)]
    images: Option<Vec<ImageEntry>>,
    annotations: Vec<ResultEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImageEntry {
    id: ImageId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file_name: Option<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not a {what}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

fn name_some(ids: &BTreeSet<&ImageId>) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(|i| i.to_string()).collect();
    let more = ids.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Captions and references paired by image, in the order of the image ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// The images.
    pub ids: Vec<ImageId>,
    /// Each image's caption (raw text).
    pub candidates: Vec<String>,
    /// Each image's reference captions (raw text).
    pub references: Vec<Vec<String>>,
}

/// Reads a results file and an annotation file and pairs them: every image of the references
/// needs exactly one result, and every result an image of the references.
pub fn read_and_pair(results: &Path, references: &Path) -> Result<Paired> {
    let entries: Vec<ResultEntry> = read_json(
        results,
        "COCO results file (a list of {\"image_id\", \"caption\"})",
    )?;
    let annotations: AnnotationFile = read_json(
        references,
        "COCO annotation file ({\"images\": [..], \"annotations\": [{\"image_id\", \"caption\"}]})",
    )?;
    let mut refs: BTreeMap<ImageId, Vec<String>> = BTreeMap::new();
    for image in annotations.images.iter().flatten() {
        refs.entry(image.id.clone()).or_default();
    }
    for a in annotations.annotations {
        refs.entry(a.image_id).or_default().push(a.caption);
    }
    let without_refs: BTreeSet<&ImageId> = refs
        .iter()
        .filter(|(_, r)| r.is_empty())
        .map(|(id, _)| id)
        .collect();
    if !without_refs.is_empty() {
        bail!(
            "{}: {} images have no reference caption: {}",
            references.display(),
            without_refs.len(),
            name_some(&without_refs)
        );
    }
    let mut candidates: BTreeMap<ImageId, String> = BTreeMap::new();
    let mut repeated = BTreeSet::new();
    for e in &entries {
        if candidates
            .insert(e.image_id.clone(), e.caption.clone())
            .is_some()
        {
            repeated.insert(&e.image_id);
        }
    }
    if !repeated.is_empty() {
        bail!(
            "{}: {} images have more than one caption (coco-caption scores one per image): {}",
            results.display(),
            repeated.len(),
            name_some(&repeated)
        );
    }
    let unknown: BTreeSet<&ImageId> = candidates
        .keys()
        .filter(|id| !refs.contains_key(*id))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{}: {} captions are for images that {} does not have: {}",
            results.display(),
            unknown.len(),
            references.display(),
            name_some(&unknown)
        );
    }
    let missing: BTreeSet<&ImageId> = refs
        .keys()
        .filter(|id| !candidates.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} images of {} have no caption: {}",
            results.display(),
            missing.len(),
            references.display(),
            name_some(&missing)
        );
    }
    let mut paired = Paired {
        ids: Vec::with_capacity(refs.len()),
        candidates: Vec::with_capacity(refs.len()),
        references: Vec::with_capacity(refs.len()),
    };
    for (id, references) in refs {
        paired
            .candidates
            .push(candidates.remove(&id).expect("checked above"));
        paired.ids.push(id);
        paired.references.push(references);
    }
    Ok(paired)
}

/// Writes captions in the COCO results format.
pub fn write_results(path: &Path, ids: &[ImageId], captions: &[String]) -> Result<()> {
    let entries: Vec<ResultEntry> = ids
        .iter()
        .zip(captions)
        .map(|(id, caption)| ResultEntry {
            image_id: id.clone(),
            caption: caption.clone(),
        })
        .collect();
    write_json(path, &serde_json::to_value(entries)?)
}

/// Writes reference captions in the COCO annotation format (what pycocoevalcap's `COCO`
/// reads), with each image's file name when known.
pub fn write_references(
    path: &Path,
    ids: &[ImageId],
    file_names: Option<&[String]>,
    references: &[Vec<String>],
) -> Result<()> {
    let images: Vec<ImageEntry> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| ImageEntry {
            id: id.clone(),
            file_name: file_names.map(|f| f[i].clone()),
        })
        .collect();
    let mut annotations = Vec::new();
    for (id, refs) in ids.iter().zip(references) {
        for caption in refs {
            annotations.push(serde_json::json!({
                "image_id": id,
                "id": annotations.len(),
                "caption": caption,
            }));
        }
    }
    let file = serde_json::json!({
        "info": {"description": "written by captioner's eval"},
        "licenses": [],
        "type": "captions",
        "images": images,
        "annotations": annotations,
    });
    write_json(path, &file)
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    captioner_datasets::files::write_file(path, serde_json::to_string(value)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(results: &str, references: &str) -> (tempdir::Dir, Result<Paired>) {
        let dir = tempdir::Dir::new();
        let (r, a) = (dir.0.join("results.json"), dir.0.join("captions.json"));
        std::fs::write(&r, results).unwrap();
        std::fs::write(&a, references).unwrap();
        let paired = read_and_pair(&r, &a);
        (dir, paired)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "captioner-coco-files-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const REFS: &str = r#"{"images": [{"id": 1}, {"id": 2}],
        "annotations": [{"image_id": 1, "caption": "a dog"}, {"image_id": 1, "caption": "a brown dog"},
                        {"image_id": 2, "caption": "a cat"}]}"#;

    #[test]
    fn pairs_results_with_all_references_of_their_image() {
        let (_d, paired) = files(
            r#"[{"image_id": 2, "caption": "a cat"}, {"image_id": 1, "caption": "a dog"}]"#,
            REFS,
        );
        let paired = paired.unwrap();
        assert_eq!(paired.ids, [ImageId::Number(1), ImageId::Number(2)]);
        assert_eq!(paired.candidates, ["a dog", "a cat"]);
        assert_eq!(paired.references[0], ["a dog", "a brown dog"]);
    }

    #[test]
    fn missing_unknown_and_repeated_images_are_named() {
        let (_d, e) = files(r#"[{"image_id": 1, "caption": "a dog"}]"#, REFS);
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("1 images of") && e.contains("have no caption: 2"),
            "{e}"
        );
        let (_d, e) = files(
            r#"[{"image_id": 1, "caption": "x"}, {"image_id": 2, "caption": "y"}, {"image_id": "cat.jpg", "caption": "z"}]"#,
            REFS,
        );
        let e = e.unwrap_err().to_string();
        assert!(e.contains("does not have: \"cat.jpg\""), "{e}");
        let (_d, e) = files(
            r#"[{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}, {"image_id": 2, "caption": "z"}]"#,
            REFS,
        );
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("more than one caption") && e.contains(": 1"),
            "{e}"
        );
    }

    #[test]
    fn a_broken_file_is_named_with_its_line() {
        let (_d, e) = files("[{\"image_id\": 1,\n \"captoin\": \"x\"}]", REFS);
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("results.json:2:") && e.contains("missing field `caption`"),
            "{e}"
        );
    }

    #[test]
    fn written_files_read_back() {
        let dir = tempdir::Dir::new();
        let ids = vec![ImageId::Name("a.jpg".into()), ImageId::Number(7)];
        let (r, a) = (dir.0.join("r.json"), dir.0.join("sub/a.json"));
        write_results(&r, &ids, &["one".into(), "two".into()]).unwrap();
        let refs = vec![
            vec!["x".to_string()],
            vec!["y".to_string(), "z".to_string()],
        ];
        write_references(&a, &ids, None, &refs).unwrap();
        let paired = read_and_pair(&r, &a).unwrap();
        assert_eq!(paired.candidates, ["two", "one"]);
        assert_eq!(paired.references, [vec!["y", "z"], vec!["x"]]);
    }
}

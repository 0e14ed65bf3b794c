//! Flickr8k and Flickr30k as published: the token files (`Flickr8k.token.txt`,
//! `results_20130124.token`: `IMAGE#N<TAB>caption`), Kaggle's `captions.txt` CSV
//! (`image,caption`) and Flickr30k's `results.csv` (`image_name| comment_number| comment`), and
//! Flickr8k's split lists (`Flickr_8k.{train,dev,test}Images.txt`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::corpus::{hashed_split, CaptionTable, Corpus};
use crate::error::{read_text, DatasetError};
use crate::problems::{ProblemKind, Problems};
use crate::split::Split;

/// Folders, relative to the data folder, where Flickr pictures are usually kept.
pub const IMAGE_DIRS: [&str; 7] = [
    "Flicker8k_Dataset",
    "Flickr8k_Dataset",
    "Images",
    "images",
    "flickr30k-images",
    "flickr30k_images",
    ".",
];

/// Reads a token file: `IMAGE#N<TAB>caption` per line. Lines without a tab, names that are not
/// image files and empty captions are recorded in `problems` and skipped.
pub(crate) fn read_token_file(
    path: &Path,
    problems: &mut Problems,
) -> Result<CaptionTable, DatasetError> {
    let text = read_text(path)?;
    let mut table = CaptionTable::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, caption)) = line.split_once('\t') else {
            problems.push(
                ProblemKind::MalformedLine,
                path,
                Some(number),
                "expected IMAGE#N<TAB>caption, found no tab",
            );
            continue;
        };
        let name = match key.rsplit_once('#') {
            Some((name, n)) if n.trim().chars().all(|c| c.is_ascii_digit()) => name,
            _ => key,
        };
        table.add(name.trim(), caption, path, Some(number), problems);
    }
    Ok(table)
}

/// Splits one CSV record into fields: `sep`-separated, fields optionally in double quotes with
/// `""` for a quote inside.
fn csv_fields(line: &str, sep: char) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("never empty");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            c if c == sep && !quoted => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

/// Reads a caption CSV: Kaggle's `captions.txt` (`image,caption`, header optional) or
/// Flickr30k's `results.csv` (`image_name| comment_number| comment`).
pub(crate) fn read_captions_csv(
    path: &Path,
    problems: &mut Problems,
) -> Result<CaptionTable, DatasetError> {
    let text = read_text(path)?;
    let mut table = CaptionTable::default();
    let mut lines = text.lines().enumerate().peekable();
    let header = lines.peek().map(|(_, l)| l.to_ascii_lowercase());
    let pipe = header.as_deref().is_some_and(|h| h.contains('|'));
    if header.is_some_and(|h| h.starts_with("image")) {
        lines.next();
    }
    let (sep, columns, expected) = if pipe {
        ('|', 3, "image_name| comment_number| comment")
    } else {
        (',', 2, "image,caption")
    };
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = csv_fields(line, sep);
        if fields.len() < columns {
            problems.push(
                ProblemKind::MalformedLine,
                path,
                Some(number),
                format!("expected {expected}, found {} field(s)", fields.len()),
            );
            continue;
        }
        // An unquoted caption may hold the separator: everything after the name is caption.
        let caption = fields.split_off(columns - 1).join(&sep.to_string());
        table.add(fields[0].trim(), &caption, path, Some(number), problems);
    }
    Ok(table)
}

/// Reads a split list: one image file name a line.
pub(crate) fn read_split_list(path: &Path) -> Result<Vec<String>, DatasetError> {
    Ok(read_text(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// `name` in `root` or in one of its direct subfolders.
pub(crate) fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    let here = root.join(name);
    if here.is_file() {
        return Some(here);
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The folder among [`IMAGE_DIRS`] under `root`, or under the folder of the annotation file
/// `annotations` when it lies deeper (Kaggle's Flickr30k: `flickr30k_images/results.csv` beside
/// `flickr30k_images/flickr30k_images/`), that holds the most of the first few `names`.
pub(crate) fn find_image_dir(root: &Path, annotations: &Path, names: &[String]) -> PathBuf {
    let sample: Vec<&String> = names.iter().take(20).collect();
    let mut bases = vec![root];
    if let Some(beside) = annotations.parent().filter(|p| *p != root) {
        bases.push(beside);
    }
    bases
        .iter()
        .flat_map(|base| IMAGE_DIRS.iter().map(move |d| base.join(d)))
        .enumerate()
        .map(|(i, d)| (sample.iter().filter(|n| d.join(n).is_file()).count(), i, d))
        .filter(|(hits, _, _)| *hits > 0)
        // Most hits; on a tie the earlier candidate.
        .max_by_key(|(hits, i, _)| (*hits, std::cmp::Reverse(*i)))
        .map(|(_, _, d)| d)
        .unwrap_or_else(|| root.join(IMAGE_DIRS[0]))
}

/// Loads a Flickr dataset from `root` with its captions in `annotations`: a token file, or a
/// CSV when `csv` is true. Splits come from Flickr8k's lists when `root` has them (images in
/// none are left out), otherwise from [`hashed_split`].
pub fn load_flickr(root: &Path, annotations: &Path, csv: bool) -> Result<Corpus, DatasetError> {
    let mut problems = Problems::default();
    let table = if csv {
        read_captions_csv(annotations, &mut problems)?
    } else {
        read_token_file(annotations, &mut problems)?
    };
    let mut lists: HashMap<String, Split> = HashMap::new();
    let mut sources = vec![annotations.to_path_buf()];
    for (split, name) in [
        (Split::Train, "Flickr_8k.trainImages.txt"),
        (Split::Valid, "Flickr_8k.devImages.txt"),
        (Split::Test, "Flickr_8k.testImages.txt"),
    ] {
        if let Some(list) = find_file(root, name) {
            for image in read_split_list(&list)? {
                lists.entry(image).or_insert(split);
            }
            sources.push(list);
        }
    }
    let image_dir = find_image_dir(root, annotations, table.names());
    let split = if lists.is_empty() {
        hashed_split(table.names())
    } else {
        lists
    };
    let mut corpus = table.into_corpus(annotations, &image_dir, |n| split.get(n).copied());
    corpus.sources = sources;
    problems.extend(std::mem::take(&mut corpus.problems));
    corpus.problems = problems;
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_handle_quotes_and_separators() {
        assert_eq!(csv_fields("a.jpg,A dog", ','), ["a.jpg", "A dog"]);
        assert_eq!(
            csv_fields("a.jpg,\"A dog, running \"\"fast\"\"\"", ','),
            ["a.jpg", "A dog, running \"fast\""]
        );
        assert_eq!(
            csv_fields("1.jpg| 0| Two men .", '|'),
            ["1.jpg", " 0", " Two men ."]
        );
    }
}

//! The data of a run: the embedded shapes scenes, or a dataset on disk read, checked (the
//! preflight), decoded on every core and turned into the data loader's datasets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use burn::data::dataset::Dataset;
use captioner_datasets::decode::decode_all;
use captioner_datasets::feature_cache::FeatureCache;
use captioner_datasets::format::{detect, load};
use captioner_datasets::problems::{counted, ProblemKind, Problems};
use captioner_datasets::{CaptionDataset, Corpus, DatasetError, ItemImage, Split, Vocab};
use serde::{Deserialize, Serialize};

use crate::coco_files::ImageId;
use crate::config::{DataSource, FilesConfig};
use crate::evaluate::HeldOut;
use crate::metrics::scoring_texts;

/// What the data of a run held, and what was skipped; part of `report.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataSummary {
    /// The annotation files read.
    pub sources: Vec<String>,
    /// Images and captions per split (train, dev, test), after skipping.
    pub splits: BTreeMap<Split, (usize, usize)>,
    /// Captioned images in no split (left out).
    pub unsplit_images: usize,
    /// Problems skipped, by kind.
    pub skipped: BTreeMap<String, usize>,
    /// Pictures decoded and resized per second, on all cores (none when read from a feature
    /// cache).
    pub images_per_second: Option<f64>,
}

/// Everything training needs from the data.
#[derive(Debug)]
pub struct RunData {
    /// The vocabulary (built from the training captions, or the run's saved one).
    pub vocab: Vocab,
    /// Training items, one per caption (shared with the training loader).
    pub train: Arc<CaptionDataset>,
    /// Validation items, scored after every epoch.
    pub valid: CaptionDataset,
    /// The reference captions of each training image (tokenised, joined by spaces), in the
    /// order of `train`'s images: self-critical training rewards samples against them.
    pub train_references: Vec<Vec<String>>,
    /// The reference captions of each validation image (tokenised, joined by spaces), in the
    /// order of `valid`'s images.
    pub valid_references: Arc<Vec<Vec<String>>>,
    /// The images of the final report (shapes: the test scenes; files: the dev split, which
    /// also picks the best epoch; a test split on disk is read at the end, see
    /// [`held_out_split`]).
    pub held_out: HeldOut,
    /// What the data held.
    pub summary: DataSummary,
}

/// Opens or builds the feature cache of the given picture files.
pub type OpenCache<'a> = &'a dyn Fn(&[PathBuf]) -> Result<Arc<FeatureCache>>;

/// Builds the data of `source`; `vocab` is the run's saved vocabulary when resuming, else one
/// is built from the training captions with `min_word_freq`. With `cache`, datasets on disk
/// are read through a feature cache instead of being decoded.
pub fn prepare(
    source: &DataSource,
    vocab: Option<Vocab>,
    min_word_freq: usize,
    cache: Option<OpenCache>,
) -> Result<RunData> {
    match source {
        DataSource::Shapes(shapes) => {
            let train_scenes = shapes.scenes(Split::Train);
            let vocab = vocab.unwrap_or_else(|| {
                let captions: Vec<String> =
                    train_scenes.iter().flat_map(|s| s.captions()).collect();
                Vocab::build(captions.iter().map(String::as_str), min_word_freq)
            });
            let train = shapes.dataset(&train_scenes, &vocab);
            let train_references = scoring_texts(
                &train_scenes
                    .iter()
                    .map(|s| s.captions())
                    .collect::<Vec<_>>(),
            );
            let valid_scenes = shapes.scenes(Split::Valid);
            let valid = shapes.dataset(&valid_scenes, &vocab);
            let valid_references = scoring_texts(
                &valid_scenes
                    .iter()
                    .map(|s| s.captions())
                    .collect::<Vec<_>>(),
            );
            let mut summary = DataSummary::default();
            summary
                .splits
                .insert(Split::Train, (train.num_images(), train.len()));
            summary
                .splits
                .insert(Split::Valid, (valid.num_images(), valid.len()));
            let held_out = HeldOut::shapes(shapes, Split::Test);
            let test_captions = held_out.references.iter().map(Vec::len).sum();
            summary
                .splits
                .insert(Split::Test, (held_out.images.len(), test_captions));
            Ok(RunData {
                vocab,
                train: Arc::new(train),
                train_references,
                valid,
                valid_references: Arc::new(valid_references),
                held_out,
                summary,
            })
        }
        DataSource::Files(files) => prepare_files(files, vocab, min_word_freq, cache),
    }
}

/// The pictures of a dataset on disk, as [`read_pictures`] found them.
struct ReadPictures {
    /// One per path: a row of the feature cache, the decoded pixels, or the file when the
    /// pictures exceed the memory budget; `None` when unreadable.
    images: Vec<Option<ItemImage>>,
    /// The unreadable pictures and why.
    unreadable: Vec<(PathBuf, String)>,
    /// Decoding speed on all cores (none when read from a cache).
    images_per_second: Option<f64>,
    /// The feature cache the rows point into.
    cache: Option<Arc<FeatureCache>>,
    /// What decoding did, for the user (none when read from a cache).
    decoded: Option<String>,
}

/// Reads the pictures at `paths` through the feature cache that `cache` opens, or decodes
/// them on every core (kept in memory when they fit in `files.image_memory_gb`).
fn read_pictures(
    files: &FilesConfig,
    paths: &[PathBuf],
    cache: Option<OpenCache>,
) -> Result<ReadPictures> {
    if let Some(open) = cache {
        let cache = open(paths)?;
        let bad: std::collections::HashMap<usize, &String> = cache
            .unreadable()
            .iter()
            .map(|(row, why)| (*row, why))
            .collect();
        let unreadable = paths
            .iter()
            .enumerate()
            .filter_map(|(row, path)| Some((path.clone(), bad.get(&row)?.to_string())))
            .collect();
        let images = (0..paths.len())
            .map(|row| (!bad.contains_key(&row)).then_some(ItemImage::Cached(row)))
            .collect();
        return Ok(ReadPictures {
            images,
            unreadable,
            images_per_second: None,
            cache: Some(cache),
            decoded: None,
        });
    }
    let gigabytes = (paths.len() * 3 * files.image_size.pow(2)) as f64 / 1e9;
    let keep = gigabytes <= files.image_memory_gb;
    let decoded = decode_all(paths, &files.resize(), true, keep);
    let message = match paths.len() {
        0 => "No picture to decode".to_string(),
        n => format!(
            "Decoded {} at {:.0} images/s; {}",
            counted(n, "picture", "pictures"),
            decoded.images_per_second,
            if keep {
                format!("kept in memory ({gigabytes:.1} GB)")
            } else {
                format!(
                    "at {gigabytes:.1} GB they exceed --image-memory-gb {}: the data loader \
                 decodes them again every epoch",
                    files.image_memory_gb
                )
            }
        ),
    };
    let unreadable: Vec<(PathBuf, String)> = decoded
        .errors
        .iter()
        .map(|e| (e.path().to_path_buf(), e.to_string()))
        .collect();
    let images = paths
        .iter()
        .zip(decoded.images)
        .map(|(path, image)| {
            (!unreadable.iter().any(|(bad, _)| bad == path)).then(|| match image {
                Some(image) => ItemImage::Pixels(image),
                None => ItemImage::File(path.as_path().into()),
            })
        })
        .collect();
    Ok(ReadPictures {
        images,
        unreadable,
        images_per_second: Some(decoded.images_per_second),
        cache: None,
        decoded: Some(message),
    })
}

/// Finds and reads the annotations of `files`, keeping of each split the images the run
/// reads ([`FilesConfig::images_of`]); also says what was read, for the user.
fn read_corpus(files: &FilesConfig) -> Result<(Corpus, String)> {
    let located = detect(&files.data_dir, Some(files.dataset), files.format)?;
    let mut reading = format!(
        "Reading {} ({} format) from {}",
        files.dataset,
        located.format,
        located.annotations.display()
    );
    let mut corpus = load(&files.data_dir, &located)?;
    for split in Split::ALL {
        if let Some(n) = files.images_of(split) {
            corpus.keep_first(split, n);
            reading += &format!("; only the first {n} images of its {split} split");
        }
    }
    Ok((corpus, reading))
}

/// Reads, checks and decodes a dataset on disk, printing the preflight report.
fn prepare_files(
    files: &FilesConfig,
    vocab: Option<Vocab>,
    min_word_freq: usize,
    cache: Option<OpenCache>,
) -> Result<RunData> {
    let (mut corpus, reading) = read_corpus(files)?;
    println!("{reading}");
    corpus.drop_long_captions(files.max_caption_len);
    // The test split is not needed to train: the final report reads it once, at the end.
    let test = corpus.counts(Split::Test);
    corpus.images.retain(|i| i.split != Split::Test);

    let paths: Vec<PathBuf> = corpus.images.iter().map(|i| i.path.clone()).collect();
    let pictures = read_pictures(files, &paths, cache)?;
    if let Some(decoded) = &pictures.decoded {
        println!("{decoded}");
    }
    let mut bad = Vec::new();
    for (path, why) in pictures.unreadable {
        let split = corpus
            .images
            .iter()
            .find(|i| i.path == path)
            .map(|i| i.split);
        let problems = &mut corpus.problems;
        match split {
            Some(split) => problems.push_for(split, ProblemKind::UnreadableImage, &path, None, why),
            None => problems.push(ProblemKind::UnreadableImage, &path, None, why),
        }
        bad.push(path);
    }
    let images: Vec<ItemImage> = pictures.images.into_iter().flatten().collect();
    let (images_per_second, cache) = (pictures.images_per_second, pictures.cache);
    corpus.remove_images(&bad);
    debug_assert_eq!(images.len(), corpus.images.len());

    let mut summary = summarize(&corpus, images_per_second);
    if test.0 > 0 {
        summary.splits.insert(Split::Test, test);
    }
    print_preflight(&corpus, &summary);
    if files.strict && !corpus.problems.is_empty() {
        return Err(DatasetError::Strict {
            count: corpus.problems.len(),
            summary: corpus.problems.summary(20),
        }
        .into());
    }
    let train_captions = corpus.split(Split::Train).flat_map(|i| i.captions.iter());
    let vocab =
        vocab.unwrap_or_else(|| Vocab::build(train_captions.map(String::as_str), min_word_freq));

    let mut train = CaptionDataset::default();
    let mut train_references = Vec::new();
    let mut valid = CaptionDataset::default();
    let mut held_out = HeldOut {
        split: Split::Valid,
        images: Vec::new(),
        ids: Vec::new(),
        references: Vec::new(),
        scenes: None,
        cache,
        resize: files.resize(),
    };
    for (entry, image) in corpus.images.iter().zip(images) {
        let encoded = entry.captions.iter().map(|c| vocab.encode(c));
        match entry.split {
            Split::Train => {
                train.push(image, encoded);
                train_references.push(entry.captions.clone());
            }
            Split::Valid => {
                valid.push(image.clone(), encoded);
                held_out.images.push(image);
                held_out.ids.push(image_id(&entry.path));
                held_out.references.push(entry.captions.clone());
            }
            Split::Test => {}
        }
    }
    if train.num_images() == 0 {
        anyhow::bail!(
            "{}: no usable training image (see the problems above)",
            files.data_dir.display()
        );
    }
    if valid.num_images() == 0 {
        anyhow::bail!(
            "{}: no usable dev image (see the problems above): the dev split picks the best \
             epoch and scores the model, so a run needs one",
            files.data_dir.display()
        );
    }
    Ok(RunData {
        vocab,
        train: Arc::new(train),
        train_references: scoring_texts(&train_references),
        valid,
        valid_references: Arc::new(scoring_texts(&held_out.references)),
        held_out,
        summary,
    })
}

/// A picture's id in results files: its file name.
fn image_id(path: &Path) -> ImageId {
    ImageId::Name(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    )
}

/// The `split` images of a dataset on disk with all of their captions as references (none
/// dropped for length, as coco-caption scores against all), for `eval`. Pictures are read
/// through `cache` when given, decoded otherwise; unreadable ones are left out with a
/// warning.
pub fn held_out_split(
    files: &FilesConfig,
    split: Split,
    cache: Option<OpenCache>,
) -> Result<HeldOut> {
    let (mut corpus, reading) = read_corpus(files)?;
    eprintln!("{reading}");
    corpus.images.retain(|i| i.split == split);
    if corpus.images.is_empty() {
        anyhow::bail!(
            "{}: the {split} split has no captioned image here (pick another with --split)",
            files.data_dir.display()
        );
    }
    if !corpus.problems.is_empty() {
        eprintln!(
            "warning: {} lines or captions of the annotations skipped:",
            corpus.problems.len()
        );
        eprint!("{}", corpus.problems.summary(3));
    }
    let paths: Vec<PathBuf> = corpus.images.iter().map(|i| i.path.clone()).collect();
    let ReadPictures {
        images,
        unreadable,
        cache,
        ..
    } = read_pictures(files, &paths, cache)?;
    if !unreadable.is_empty() {
        eprintln!(
            "warning: {} unreadable pictures left out of the scores, e.g. {}",
            unreadable.len(),
            unreadable[0].1
        );
    }
    let mut held_out = HeldOut {
        split,
        images: Vec::new(),
        ids: Vec::new(),
        references: Vec::new(),
        scenes: None,
        cache,
        resize: files.resize(),
    };
    for (entry, image) in corpus.images.iter().zip(images) {
        if let Some(image) = image {
            held_out.images.push(image);
            held_out.ids.push(image_id(&entry.path));
            held_out.references.push(entry.captions.clone());
        }
    }
    Ok(held_out)
}

fn summarize(corpus: &Corpus, images_per_second: Option<f64>) -> DataSummary {
    let counts = |p: &Problems| {
        p.counts()
            .into_iter()
            .map(|(k, n)| (k.describe().to_string(), n))
            .collect()
    };
    DataSummary {
        sources: corpus
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        splits: Split::ALL
            .into_iter()
            .map(|s| (s, corpus.counts(s)))
            .filter(|(_, (images, _))| *images > 0)
            .collect(),
        unsplit_images: corpus.unsplit_images,
        skipped: counts(&corpus.problems),
        images_per_second,
    }
}

fn print_preflight(corpus: &Corpus, summary: &DataSummary) {
    println!("Preflight:");
    for (split, (images, captions)) in &summary.splits {
        let when = if *split == Split::Test {
            " (scored once, at the end)"
        } else {
            ""
        };
        println!(
            "  {split}: {}, {}{when}",
            counted(*images, "image", "images"),
            counted(*captions, "caption", "captions")
        );
    }
    if corpus.unsplit_images > 0 {
        println!(
            "  {} in no split (left out)",
            counted(
                corpus.unsplit_images,
                "captioned image is",
                "captioned images are"
            )
        );
    }
    if corpus.problems.is_empty() {
        println!("  nothing to skip");
    } else {
        println!(
            "Skipped ({} in all; --strict makes them errors):",
            corpus.problems.len()
        );
        print!("{}", corpus.problems.summary(3));
    }
}

//! Each dataset format read from a small fixture laid out exactly as the published files, with
//! the kinds of damage real files have.

use std::path::{Path, PathBuf};

use captioner_datasets::format::{candidates, detect, load};
use captioner_datasets::image::RgbImage;
use captioner_datasets::problems::ProblemKind;
use captioner_datasets::{DatasetName, Format, Split};

fn fixture(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("captioner-fmt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn picture(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(12, 9, ::image::Rgb([200, 30, 30]))
        .save(path)
        .unwrap();
}

/// Flickr8k as distributed: text files in Flickr8k_text/, pictures in Flicker8k_Dataset/.
fn flickr8k(dir: &Path) {
    let images = dir.join("Flicker8k_Dataset");
    for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
        picture(&images.join(name));
    }
    write(
        &dir.join("Flickr8k_text/Flickr8k.token.txt"),
        "a.jpg#0\tA dog runs .\n\
         a.jpg#1\tA brown dog is running on grass .\n\
         b.jpg#0\tTwo children play .\n\
         a bad line without a tab\n\
         b.jpg.1#0\tThe bogus name of the real file .\n\
         c.jpg#0\t  \n\
         c.jpg#1\tA man on a bike .\n\
         d.jpg#0\tA red wall .\n\
         gone.jpg#0\tThis picture is not on disk .\n\
         nosplit.jpg#0\tIn no split list .\n",
    );
    write(
        &dir.join("Flickr8k_text/Flickr_8k.trainImages.txt"),
        "a.jpg\nb.jpg\ngone.jpg\n",
    );
    write(
        &dir.join("Flickr8k_text/Flickr_8k.devImages.txt"),
        "c.jpg\n",
    );
    write(
        &dir.join("Flickr8k_text/Flickr_8k.testImages.txt"),
        "d.jpg\n",
    );
}

#[test]
fn flickr8k_token_file_with_split_lists() {
    let dir = fixture("flickr8k");
    flickr8k(&dir);
    let located = detect(&dir, Some(DatasetName::Flickr8k), None).unwrap();
    assert_eq!(located.format, Format::Flickr);
    let corpus = load(&dir, &located).unwrap();
    assert_eq!(corpus.counts(Split::Train), (2, 3));
    assert_eq!(corpus.counts(Split::Valid), (1, 1));
    assert_eq!(corpus.counts(Split::Test), (1, 1));
    assert_eq!(corpus.unsplit_images, 1);
    let a = &corpus.images[0];
    assert!(a.path.ends_with("Flicker8k_Dataset/a.jpg"), "{:?}", a.path);
    assert_eq!(a.captions[1], "A brown dog is running on grass .");

    let problems = &corpus.problems;
    let token = "Flickr8k.token.txt";
    let find = |kind| {
        let p = problems.list().iter().find(|p| p.kind == kind).unwrap();
        assert!(p.file.ends_with(token), "{p}");
        p.line
    };
    assert_eq!(find(ProblemKind::MalformedLine), Some(4));
    assert_eq!(find(ProblemKind::BadImageName), Some(5));
    assert_eq!(find(ProblemKind::EmptyCaption), Some(6));
    assert_eq!(find(ProblemKind::MissingImage), Some(9));
    assert_eq!(problems.len(), 4);
    let summary = problems.summary(5);
    assert!(summary.contains("Flickr8k.token.txt:5:"), "{summary}");
    assert!(summary.contains("b.jpg.1"), "{summary}");
}

#[test]
fn kaggle_captions_csv_with_quotes_and_hashed_split() {
    let dir = fixture("kaggle");
    let mut csv = String::from("image,caption\n");
    for i in 0..16 {
        picture(&dir.join(format!("Images/{i}.jpg")));
        csv.push_str(&format!("{i}.jpg,\"A dog, a cat and \"\"friends\"\" .\"\n"));
        csv.push_str(&format!("{i}.jpg,An unquoted caption, with a comma\n"));
    }
    csv.push_str("no-comma-here\n");
    write(&dir.join("captions.txt"), &csv);
    let located = detect(&dir, Some(DatasetName::Flickr8k), None).unwrap();
    assert_eq!(located.format, Format::Csv);
    let corpus = load(&dir, &located).unwrap();
    assert_eq!(corpus.images.len(), 16);
    assert_eq!(
        corpus.images[0].captions,
        [
            "A dog, a cat and \"friends\" .",
            "An unquoted caption, with a comma"
        ]
    );
    // No split lists: 1/8 each to dev and test, decided by the file name.
    assert_eq!(corpus.counts(Split::Test).0, 2);
    assert_eq!(corpus.counts(Split::Valid).0, 2);
    let bad = &corpus.problems.list()[0];
    assert_eq!((bad.kind, bad.line), (ProblemKind::MalformedLine, Some(34)));
}

#[test]
fn flickr30k_token_and_pipe_csv_and_kaggles_layout() {
    let dir = fixture("flickr30k");
    picture(&dir.join("flickr30k-images/1000092795.jpg"));
    write(
        &dir.join("results_20130124.token"),
        "1000092795.jpg#0\tTwo young guys with shaggy hair .\n\
         1000092795.jpg#1\tTwo young , White males are outside .\n",
    );
    let corpus = load(
        &dir,
        &detect(&dir, Some(DatasetName::Flickr30k), None).unwrap(),
    )
    .unwrap();
    assert_eq!(corpus.images.len(), 1);
    assert_eq!(corpus.images[0].captions.len(), 2);

    let csv_dir = fixture("flickr30k-csv");
    picture(&csv_dir.join("flickr30k_images/1000092795.jpg"));
    write(
        &csv_dir.join("results.csv"),
        "image_name| comment_number| comment\n\
         1000092795.jpg| 0| Two young guys with shaggy hair .\n\
         1000092795.jpg| 1| Two young | White males .\n",
    );
    let located = detect(&csv_dir, Some(DatasetName::Flickr30k), None).unwrap();
    assert_eq!(located.format, Format::Csv);
    let corpus = load(&csv_dir, &located).unwrap();
    assert_eq!(
        corpus.images[0].captions,
        [
            "Two young guys with shaggy hair .",
            "Two young | White males ."
        ]
    );

    // Kaggle's download, --data-dir at the download folder: the csv one folder down, the
    // pictures in a folder of the same name below it.
    let kaggle = fixture("flickr30k-kaggle");
    picture(&kaggle.join("flickr30k_images/flickr30k_images/1000092795.jpg"));
    write(
        &kaggle.join("flickr30k_images/results.csv"),
        "image_name| comment_number| comment\n\
         1000092795.jpg| 0| Two young guys with shaggy hair .\n",
    );
    let located = detect(&kaggle, Some(DatasetName::Flickr30k), None).unwrap();
    let corpus = load(&kaggle, &located).unwrap();
    assert_eq!(corpus.images.len(), 1, "{:?}", corpus.problems.list());
    assert!(
        corpus.problems.list().is_empty(),
        "{:?}",
        corpus.problems.list()
    );
}

#[test]
fn coco_annotations_and_a_json_file_of_the_wrong_shape() {
    let dir = fixture("coco");
    picture(&dir.join("train2014/COCO_train2014_000000000009.jpg"));
    picture(&dir.join("val2014/COCO_val2014_000000000042.jpg"));
    write(
        &dir.join("annotations/captions_train2014.json"),
        r#"{"info": {}, "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 480, "width": 640}],
            "annotations": [{"id": 1, "image_id": 9, "caption": "A plate of food."},
                            {"id": 2, "image_id": 9, "caption": "Broccoli and rice."},
                            {"id": 3, "image_id": 77, "caption": "An orphan."}]}"#,
    );
    write(
        &dir.join("annotations/captions_val2014.json"),
        r#"{"images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg"}],
            "annotations": [{"id": 5, "image_id": 42, "caption": "A giraffe."}]}"#,
    );
    let located = detect(&dir, None, None).unwrap();
    assert_eq!(located.format, Format::Coco);
    let corpus = load(&dir, &located).unwrap();
    assert_eq!(corpus.counts(Split::Train), (1, 2));
    assert_eq!(corpus.counts(Split::Valid), (1, 1));
    assert!(corpus.problems.list()[0].message.contains("image id 77"));

    write(
        &dir.join("annotations/captions_val2014.json"),
        "{\n  \"images\": [\n    {\"id\": \"forty-two\"}\n  ]\n}",
    );
    let err = load(&dir, &located).unwrap_err().to_string();
    assert!(err.contains("captions_val2014.json:3:"), "{err}");
    assert!(err.contains("not a COCO captions file"), "{err}");
}

#[test]
fn coco_reads_the_2017_pair_beside_a_stray_2014_file_and_names_a_missing_one() {
    let dir = fixture("coco2017");
    picture(&dir.join("train2017/000000000009.jpg"));
    picture(&dir.join("val2017/000000000042.jpg"));
    let file = |id: u32, name: &str, caption: &str| {
        format!(
            r#"{{"images": [{{"id": {id}, "file_name": "{name}"}}],
                "annotations": [{{"id": 1, "image_id": {id}, "caption": "{caption}"}}]}}"#
        )
    };
    write(
        &dir.join("annotations/captions_train2017.json"),
        &file(9, "000000000009.jpg", "A plate of food."),
    );
    write(
        &dir.join("annotations/captions_val2017.json"),
        &file(42, "000000000042.jpg", "A giraffe."),
    );
    write(
        &dir.join("annotations/captions_val2014.json"),
        &file(7, "COCO_val2014_000000000007.jpg", "Not on disk."),
    );
    let located = detect(&dir, None, None).unwrap();
    let corpus = load(&dir, &located).unwrap();
    assert_eq!(corpus.counts(Split::Train), (1, 1));
    assert_eq!(corpus.counts(Split::Valid), (1, 1));
    assert!(
        corpus.problems.list().is_empty(),
        "{:?}",
        corpus.problems.list()
    );

    std::fs::remove_file(dir.join("annotations/captions_train2017.json")).unwrap();
    let err = load(&dir, &located).unwrap_err().to_string();
    assert!(
        err.contains("captions_train2017.json is missing")
            || err.contains("captions_train2014.json is missing"),
        "{err}"
    );
}

#[test]
fn karpathy_split_puts_restval_in_train_and_counts_images_without_sentences() {
    let dir = fixture("karpathy");
    for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
        picture(&dir.join("Flicker8k_Dataset").join(name));
    }
    let image = |name: &str, split: &str| {
        format!(
            r#"{{"filename": "{name}", "split": "{split}", "sentences": [{{"tokens": ["a", "dog"], "raw": "A dog."}}, {{"tokens": ["a", "cat"], "raw": "A cat."}}]}}"#
        )
    };
    write(
        &dir.join("dataset_flickr8k.json"),
        &format!(
            r#"{{"dataset": "flickr8k", "images": [{}, {}, {}, {}, {}]}}"#,
            image("a.jpg", "train"),
            image("b.jpg", "restval"),
            image("c.jpg", "val"),
            image("d.jpg", "test"),
            r#"{"filename": "e.jpg", "split": "val", "sentences": []}"#
        ),
    );
    let located = detect(&dir, Some(DatasetName::Flickr8k), None).unwrap();
    assert_eq!(located.format, Format::Karpathy);
    let corpus = load(&dir, &located).unwrap();
    assert_eq!(corpus.counts(Split::Train), (2, 4));
    assert_eq!(corpus.counts(Split::Valid), (1, 2));
    assert_eq!(corpus.counts(Split::Test), (1, 2));
    assert_eq!(corpus.images[0].captions, ["a dog", "a cat"]);
    // An image without sentences is counted, by its split, not dropped without a word.
    let summary = corpus.problems.summary(1);
    assert!(
        summary.contains("1 image without a caption (dev 1)"),
        "{summary}"
    );
    assert!(
        summary.contains("images[4] (e.jpg): no sentences"),
        "{summary}"
    );
}

#[test]
fn detection_explains_none_and_several() {
    let empty = fixture("empty");
    let err = detect(&empty, Some(DatasetName::Flickr8k), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Flickr8k.token.txt"), "{err}");
    let missing = detect(Path::new("/nonexistent/flickr"), None, None)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("--data-dir"), "{missing}");

    let both = fixture("both");
    flickr8k(&both);
    write(&both.join("dataset_flickr8k.json"), r#"{"images": []}"#);
    let err = detect(&both, Some(DatasetName::Flickr8k), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--format karpathy") && err.contains("--format flickr"),
        "{err}"
    );
    assert_eq!(candidates(&both, None, Some(Format::Flickr)).len(), 1);
    let chosen = detect(&both, Some(DatasetName::Flickr8k), Some(Format::Flickr)).unwrap();
    assert_eq!(chosen.format, Format::Flickr);
}

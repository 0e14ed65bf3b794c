//! `infer` as a user runs it: good and bad pictures, folders and stdin, caption files,
//! attention pictures and the page, which headless Chromium then shows.

use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_model::{Captioning, ModelFiles};

use crate::common::{exec, temp_dir, text, untrained_run, Cpu};

#[test]
fn infer_captions_good_pictures_and_reports_bad_ones() {
    let dir = temp_dir("infer");
    let run = untrained_run(&dir);
    let model = run.root().to_str().unwrap();
    let scene = &ShapesConfig::default().scenes(Split::Test)[0];
    let colour = dir.join("scene.png");
    scene.render(64).save(&colour).unwrap();
    let gray = dir.join("gray.png");
    image::imageops::grayscale(&scene.render(100))
        .save(&gray)
        .unwrap();
    let not_image = dir.join("notes.jpg");
    std::fs::write(&not_image, "this is not a picture").unwrap();
    let missing = dir.join("missing.png");

    // Good pictures, any size and grayscale included: one `path<TAB>caption` line each.
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            colour.to_str().unwrap(),
            gray.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(&format!("{}\t", colour.display())));
    assert!(lines[1].starts_with(&format!("{}\t", gray.display())));

    // JSON lines with greedy decoding.
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            "--json",
            "--beam-size",
            "1",
            colour.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(json["image"], colour.display().to_string());
    let words: Vec<&str> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(json["caption"], words.join(" "));
    assert!(json["score"].as_f64().unwrap() <= 0.0);

    // Bad pictures are named on stderr and skipped; the good one is still captioned; exit 1.
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            missing.to_str().unwrap(),
            not_image.to_str().unwrap(),
            colour.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("missing.png") && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("notes.jpg") && stderr.contains("not a readable image"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);

    // A folder that is not a run.
    let out = exec(
        "infer",
        &["--model", dir.to_str().unwrap(), colour.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no trained model"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn infer_walks_folders_and_stdin_and_writes_caption_files_attention_pictures_and_a_page() {
    use captioner::attention_image::{grid_shape, GAP, LABEL_HEIGHT};
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = temp_dir("infer-folders");
    let run = untrained_run(&dir);
    let model = run.root().to_str().unwrap();
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("park/deeper")).unwrap();
    let scenes = ShapesConfig::default().scenes(Split::Test);
    let names = [
        "b.png",
        "a.jpg",
        "park/c.png",
        "park/deeper/d.PNG",
        "park/e.png",
    ];
    for (scene, name) in scenes.iter().zip(names) {
        scene.render(48).save(photos.join(name)).unwrap();
    }
    std::fs::write(photos.join("park/broken.jpg"), "not a picture").unwrap();
    std::fs::write(photos.join("park/notes.txt"), "not looked at").unwrap();
    let extra = dir.join("extra.png");
    scenes[5].render(40).save(&extra).unwrap();

    let out_dir = dir.join("captions");
    let attention = dir.join("attention");
    let page = dir.join("page.html");
    let mut child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args([
            "--model",
            model,
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
            "--attention-dir",
            attention.to_str().unwrap(),
            "--html",
            page.to_str().unwrap(),
            "--batch-size",
            "2",
            photos.to_str().unwrap(),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", extra.display()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    // The broken file is named and skipped; the rest are captioned; exit 1.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let images: Vec<String> = lines
        .iter()
        .map(|l| l["image"].as_str().unwrap().to_string())
        .collect();
    // The folder in path order, then the path from stdin.
    let expected: Vec<String> = [
        "a.jpg",
        "b.png",
        "park/c.png",
        "park/deeper/d.PNG",
        "park/e.png",
    ]
    .iter()
    .map(|n| photos.join(n).display().to_string())
    .chain([extra.display().to_string()])
    .collect();
    assert_eq!(images, expected);

    let side = Captioning::<Cpu>::load(&ModelFiles::new(run.root()), &Default::default())
        .unwrap()
        .image_size() as u32;
    for (line, relative) in
        lines
            .iter()
            .zip(["a", "b", "park/c", "park/deeper/d", "park/e", "extra"])
    {
        let caption = line["caption"].as_str().unwrap();
        // A caption file under the same subfolders, and beam 3's two other captions.
        let written = std::fs::read_to_string(out_dir.join(format!("{relative}.txt"))).unwrap();
        assert_eq!(written, format!("{caption}\n"));
        assert!(
            line["alternatives"].as_array().unwrap().len() <= 2,
            "{line}"
        );
        // One panel for the picture and one per word.
        let words = line["tokens"].as_array().unwrap().len() as u32;
        let grid = image::open(attention.join(format!("{relative}.png"))).unwrap();
        let (columns, rows) = grid_shape(words + 1);
        assert_eq!(
            (grid.width(), grid.height()),
            (
                GAP + columns * (side + GAP),
                GAP + rows * (LABEL_HEIGHT + side + GAP)
            ),
            "{relative}: {words} words"
        );
    }
    assert!(!out_dir.join("park/broken.txt").exists());

    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<section class=\"picture\">").count(), 6);
    assert_eq!(html.matches("data:image/jpeg;base64,").count(), 6);
    for line in &lines {
        let caption = line["caption"].as_str().unwrap();
        assert!(html.contains(&format!("<p class=\"caption\">{caption}</p>")));
    }
    // An untrained model gives most pictures one caption: said when it does.
    let said = stderr.contains("pictures got the same caption");
    let captions: Vec<&str> = lines
        .iter()
        .map(|l| l["caption"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        captioner::report::dominant_caption(captions.iter().copied()).is_some(),
        "{stderr}"
    );

    // Two pictures that would write the same caption file: refused before any work.
    let twin = dir.join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    scenes[0].render(32).save(twin.join("x.png")).unwrap();
    scenes[1].render(32).save(twin.join("x.jpg")).unwrap();
    let out = exec(
        "infer",
        &[
            "--model",
            model,
            "--out",
            out_dir.to_str().unwrap(),
            twin.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("would both write"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Needs Debian's `chromium` (`.ci/run` installs it and runs this test):
/// `cargo test --release --test it -- --ignored chromium`.
#[test]
#[ignore = "needs chromium; .ci/run runs it"]
fn the_html_page_shows_every_caption_and_picture_in_headless_chromium() {
    use std::process::Command;

    let dir = temp_dir("chromium");
    let run = untrained_run(&dir);
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for (i, scene) in ShapesConfig::default().scenes(Split::Test)[..3]
        .iter()
        .enumerate()
    {
        scene
            .render(64)
            .save(photos.join(format!("{i}.png")))
            .unwrap();
    }
    let page = dir.join("page.html");
    let out = exec(
        "infer",
        &[
            "--model",
            run.root().to_str().unwrap(),
            "--json",
            "--html",
            page.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let captions: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["caption"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium runs (apt-get install chromium)")
    };
    // The page as chromium parsed it: a section and a caption paragraph per picture.
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", text(&dom.stderr));
    let dom = text(&dom.stdout);
    assert_eq!(
        dom.matches("<section class=\"picture\">").count(),
        3,
        "{dom}"
    );
    for caption in &captions {
        assert!(
            dom.contains(&format!("<p class=\"caption\">{caption}</p>")),
            "{caption}"
        );
    }
    let shot = dir.join("page.png");
    let out = chromium(&[
        "--window-size=1300,900",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shot = image::open(&shot).unwrap().to_rgb8();
    // Pictures were drawn: many pixels are neither the page's white nor its text's gray.
    let coloured = shot
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.max(g).max(b) - r.min(g).min(b) > 60
        })
        .count();
    assert!(
        coloured > 1000,
        "only {coloured} coloured pixels in the screenshot"
    );
    std::fs::remove_dir_all(dir).ok();
}

//! Which pictures a command was asked for: files, folders walked recursively, and lists of
//! paths on stdin.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// File extensions taken as pictures when a folder is walked (compared without case).
pub const PICTURE_EXTENSIONS: [&str; 8] =
    ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// One picture to caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Its path, as given or as found under a folder given.
    pub path: PathBuf,
    /// Its path under the folder it was found in (the file name for a file given itself):
    /// where its results go under an output folder.
    pub relative: PathBuf,
}

/// Something given that is not a picture to caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// The path as given (or `-` for stdin).
    pub path: PathBuf,
    /// What is wrong, in words.
    pub why: String,
}

/// Files of a folder given that were not taken, their names not ending in a
/// [`PICTURE_EXTENSIONS`] extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    /// The folder as given.
    pub folder: PathBuf,
    /// The files, relative to it, in path order.
    pub files: Vec<PathBuf>,
}

impl fmt::Display for PassedOver {
    /// One line: the count and the first few names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMED: usize = 5;
        let names: Vec<String> = self
            .files
            .iter()
            .take(NAMED)
            .map(|p| p.display().to_string())
            .collect();
        let more = self.files.len().saturating_sub(NAMED);
        write!(
            f,
            "{}: {} file{} not taken, not named as pictures (.{}): {}{}",
            self.folder.display(),
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            PICTURE_EXTENSIONS.join(", ."),
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    }
}

/// What a command's inputs hold.
#[derive(Debug, Default)]
pub struct Collected {
    /// The pictures, in a stable order.
    pub pictures: Vec<Picture>,
    /// Inputs that name no picture.
    pub problems: Vec<InputProblem>,
    /// Per folder given, its files that are not taken as pictures.
    pub passed_over: Vec<PassedOver>,
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

/// The pictures that `inputs` name, in a stable order, and the inputs that name none:
/// - a file is taken as it is, whatever its extension (reading it says whether it is a
///   picture);
/// - a folder is walked recursively for files with a [`PICTURE_EXTENSIONS`] extension, in
///   the byte order of their paths, skipping names that start with a dot; links to folders
///   are not followed (no walk runs in circles);
/// - `-` reads one path a line from `stdin` (empty lines skipped), each taken as above.
///
/// A path that does not exist, an unreadable folder, or a folder without pictures is a
/// problem; the other inputs are still collected. The other files of a folder are listed in
/// `passed_over`.
pub fn collect(inputs: &[PathBuf], stdin: &mut dyn BufRead) -> Collected {
    let mut collected = Collected::default();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut line = String::new();
            let mut number = 0;
            loop {
                line.clear();
                number += 1;
                match stdin.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        let path = line.trim_end_matches(['\n', '\r']);
                        if !path.trim().is_empty() {
                            collect_one(Path::new(path), &mut collected);
                        }
                    }
                    Err(e) => {
                        collected.problems.push(InputProblem {
                            path: input.clone(),
                            why: format!("stdin, line {number}: {e}"),
                        });
                        break;
                    }
                }
            }
        } else {
            collect_one(input, &mut collected);
        }
    }
    collected
}

fn collect_one(path: &Path, collected: &mut Collected) {
    let problem = |why: String| InputProblem {
        path: path.to_path_buf(),
        why,
    };
    let Collected {
        pictures,
        problems,
        passed_over,
    } = collected;
    match std::fs::metadata(path) {
        Err(e) => problems.push(problem(e.to_string())),
        Ok(meta) if meta.is_dir() => {
            let before = pictures.len();
            let mut found = Walked::default();
            walk(path, Path::new(""), &mut found, problems);
            found.pictures.sort();
            pictures.extend(found.pictures.into_iter().map(|relative| Picture {
                path: path.join(&relative),
                relative,
            }));
            if !found.others.is_empty() {
                found.others.sort();
                passed_over.push(PassedOver {
                    folder: path.to_path_buf(),
                    files: found.others,
                });
            }
            if pictures.len() == before {
                problems.push(problem(format!(
                    "a folder with no pictures in it (files ending in .{})",
                    PICTURE_EXTENSIONS.join(", .")
                )));
            }
        }
        Ok(_) => pictures.push(Picture {
            path: path.to_path_buf(),
            relative: PathBuf::from(path.file_name().unwrap_or(path.as_os_str())),
        }),
    }
}

/// The files found under a folder, relative to it.
#[derive(Default)]
struct Walked {
    pictures: Vec<PathBuf>,
    others: Vec<PathBuf>,
}

/// Adds to `found` the files under `root.join(under)`, as paths relative to `root`.
fn walk(root: &Path, under: &Path, found: &mut Walked, problems: &mut Vec<InputProblem>) {
    let folder = root.join(under);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(InputProblem {
                path: folder,
                why: format!("cannot read this folder: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let relative = under.join(&name);
        // `file_type` does not follow links: a link to a folder is neither walked nor taken.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(root, &relative, found, problems);
        } else if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            match is_picture_name(&relative) {
                true => found.pictures.push(relative),
                false => found.others.push(relative),
            }
        }
    }
}

/// Whether a file name ends in one of [`PICTURE_EXTENSIONS`] (any case).
pub fn is_picture_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICTURE_EXTENSIONS.iter().any(|p| e.eq_ignore_ascii_case(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("captioner-pictures-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(dir: &Path, relative: &str) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    fn relatives(pictures: &[Picture]) -> Vec<String> {
        pictures
            .iter()
            .map(|p| p.relative.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_folder_is_walked_recursively_for_pictures_in_path_order_and_other_files_are_named() {
        let dir = folder("walk");
        for name in [
            "b.jpg",
            "a.PNG",
            "notes.txt",
            "sub/phone.webp",
            "sub/scan.TIFF",
            "sub/clip.mp4",
            "sub/z.jpeg",
            "sub/deeper/c.jpg",
            "Sub2/d.png",
            ".hidden/e.jpg",
            ".f.jpg",
        ] {
            touch(&dir, name);
        }
        let found = collect(std::slice::from_ref(&dir), &mut &b""[..]);
        let pictures = found.pictures;
        assert_eq!(found.problems, []);
        assert_eq!(
            relatives(&pictures),
            [
                "Sub2/d.png",
                "a.PNG",
                "b.jpg",
                "sub/deeper/c.jpg",
                "sub/phone.webp",
                "sub/scan.TIFF",
                "sub/z.jpeg"
            ]
        );
        assert_eq!(pictures[3].path, dir.join("sub/deeper/c.jpg"));
        let [passed_over] = &found.passed_over[..] else {
            panic!("{:?}", found.passed_over)
        };
        let line = passed_over.to_string();
        assert!(
            line.starts_with(&format!("{}: 2 files not taken", dir.display())),
            "{line}"
        );
        assert!(line.ends_with(": notes.txt, sub/clip.mp4"), "{line}");
        // The same order again, whatever order the file system lists them in.
        assert_eq!(
            collect(std::slice::from_ref(&dir), &mut &b""[..]).pictures,
            pictures
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn files_are_taken_as_given_and_stdin_lists_more_in_its_order() {
        let dir = folder("stdin");
        touch(&dir, "one.jpg");
        touch(&dir, "two.dat");
        touch(&dir, "more/three.png");
        let listed = format!(
            "{}\n\n{}\r\n",
            dir.join("two.dat").display(),
            dir.join("more").display()
        );
        let inputs = [dir.join("one.jpg"), PathBuf::from("-")];
        let Collected {
            pictures, problems, ..
        } = collect(&inputs, &mut listed.as_bytes());
        assert_eq!(problems, []);
        assert_eq!(relatives(&pictures), ["one.jpg", "two.dat", "three.png"]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_path_and_a_folder_without_pictures_are_problems_and_the_rest_go_on() {
        let dir = folder("problems");
        touch(&dir, "empty/readme.txt");
        touch(&dir, "ok.jpg");
        let inputs = [
            dir.join("missing.jpg"),
            dir.join("empty"),
            dir.join("ok.jpg"),
        ];
        let Collected {
            pictures, problems, ..
        } = collect(&inputs, &mut &b""[..]);
        assert_eq!(relatives(&pictures), ["ok.jpg"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, dir.join("missing.jpg"));
        assert!(
            problems[1].to_string().contains("no pictures"),
            "{}",
            problems[1]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn a_link_back_to_a_folder_above_is_not_followed() {
        let dir = folder("link");
        touch(&dir, "sub/a.jpg");
        std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
        let Collected {
            pictures, problems, ..
        } = collect(std::slice::from_ref(&dir), &mut &b""[..]);
        assert_eq!(problems, []);
        assert_eq!(relatives(&pictures), ["sub/a.jpg"]);
        std::fs::remove_dir_all(dir).ok();
    }
}

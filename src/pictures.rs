//! Which pictures a command was asked for: files, folders walked recursively, and lists of
//! paths on stdin.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// File extensions taken as pictures when a folder is walked (compared without case).
pub const PICTURE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

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
/// problem; the other inputs are still collected.
pub fn collect(inputs: &[PathBuf], stdin: &mut dyn BufRead) -> (Vec<Picture>, Vec<InputProblem>) {
    let mut pictures = Vec::new();
    let mut problems = Vec::new();
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
                            collect_one(Path::new(path), &mut pictures, &mut problems);
                        }
                    }
                    Err(e) => {
                        problems.push(InputProblem {
                            path: input.clone(),
                            why: format!("stdin, line {number}: {e}"),
                        });
                        break;
                    }
                }
            }
        } else {
            collect_one(input, &mut pictures, &mut problems);
        }
    }
    (pictures, problems)
}

fn collect_one(path: &Path, pictures: &mut Vec<Picture>, problems: &mut Vec<InputProblem>) {
    let problem = |why: String| InputProblem {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::metadata(path) {
        Err(e) => problems.push(problem(e.to_string())),
        Ok(meta) if meta.is_dir() => {
            let before = pictures.len();
            let mut found = Vec::new();
            walk(path, Path::new(""), &mut found, problems);
            found.sort();
            pictures.extend(found.into_iter().map(|relative| Picture {
                path: path.join(&relative),
                relative,
            }));
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

/// Adds to `found` the pictures under `root.join(under)`, as paths relative to `root`.
fn walk(root: &Path, under: &Path, found: &mut Vec<PathBuf>, problems: &mut Vec<InputProblem>) {
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
        } else if is_picture_name(&relative)
            && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
        {
            found.push(relative);
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
    fn a_folder_is_walked_recursively_for_pictures_in_path_order() {
        let dir = folder("walk");
        for name in [
            "b.jpg",
            "a.PNG",
            "notes.txt",
            "sub/z.jpeg",
            "sub/deeper/c.jpg",
            "Sub2/d.png",
            ".hidden/e.jpg",
            ".f.jpg",
        ] {
            touch(&dir, name);
        }
        let (pictures, problems) = collect(std::slice::from_ref(&dir), &mut &b""[..]);
        assert_eq!(problems, []);
        assert_eq!(
            relatives(&pictures),
            [
                "Sub2/d.png",
                "a.PNG",
                "b.jpg",
                "sub/deeper/c.jpg",
                "sub/z.jpeg"
            ]
        );
        assert_eq!(pictures[3].path, dir.join("sub/deeper/c.jpg"));
        // The same order again, whatever order the file system lists them in.
        assert_eq!(
            collect(std::slice::from_ref(&dir), &mut &b""[..]).0,
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
        let (pictures, problems) = collect(&inputs, &mut listed.as_bytes());
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
        let (pictures, problems) = collect(&inputs, &mut &b""[..]);
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
        let (pictures, problems) = collect(std::slice::from_ref(&dir), &mut &b""[..]);
        assert_eq!(problems, []);
        assert_eq!(relatives(&pictures), ["sub/a.jpg"]);
        std::fs::remove_dir_all(dir).ok();
    }
}

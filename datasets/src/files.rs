//! Writing files whole or not at all.
//!
//! Every file that a run, a cache or a command leaves behind is written here: to a temporary
//! name beside it that no other writer uses (process id and a counter), flushed to disk, then
//! renamed over the final name, and the folder synced so that the rename itself survives a
//! power cut. A reader, or a run killed at any moment, sees the old file or the new one, never
//! half of one; a killed writer leaves at most a `.tmp` file, which the next write of the same
//! name does not reuse.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary path beside `path` that no other writer, in this process or another, uses:
/// `.<name>.<pid>.<n>.tmp`.
pub fn temporary_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `path` whole or not at all with what `write` puts into a buffered writer, creating
/// the folders above it. On an error the temporary file is removed and `path` is as it was.
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<&File>) -> io::Result<()>,
) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = temporary_path(path);
    let written = (|| {
        let file = File::create(&temporary)?;
        let mut writer = io::BufWriter::new(&file);
        write(&mut writer)?;
        writer.flush()?;
        drop(writer);
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        std::fs::remove_file(&temporary).ok();
        return written;
    }
    sync_folder(parent.unwrap_or(Path::new(".")));
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all ([`write_with`]).
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |writer| writer.write_all(bytes))
}

/// Makes a rename or removal in `folder` durable. Best effort: some file systems (and Windows)
/// cannot open a folder for syncing, and the data itself is already synced.
pub fn sync_folder(folder: &Path) {
    if let Ok(folder) = File::open(folder) {
        folder.sync_all().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("captioner-files-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        dir
    }

    #[test]
    fn a_written_file_replaces_the_old_one_and_leaves_no_temporary_file() {
        let dir = scratch("replace");
        let path = dir.join("sub").join("a.json");
        write_file(&path, b"old").unwrap();
        write_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_its_temporary() {
        let dir = scratch("fail");
        let path = dir.join("a.json");
        write_file(&path, b"old").unwrap();
        let failed = write_with(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn two_writers_of_one_name_never_share_a_temporary_file() {
        let path = Path::new("/x/cache/features.bin");
        let (a, b) = (temporary_path(path), temporary_path(path));
        assert_ne!(a, b);
        assert_eq!(a.parent(), path.parent());
    }
}

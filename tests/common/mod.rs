//! Helpers shared by the command-line tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("captioner-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one of the binaries with `args`.
pub fn exec(bin: &str, args: &[&str]) -> Output {
    let exe = match bin {
        "train" => env!("CARGO_BIN_EXE_train"),
        "infer" => env!("CARGO_BIN_EXE_infer"),
        "features" => env!("CARGO_BIN_EXE_features"),
        "eval" => env!("CARGO_BIN_EXE_eval"),
        other => panic!("no binary {other}"),
    };
    Command::new(exe).args(args).output().expect("binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

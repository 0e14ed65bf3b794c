//! The captioner that comes with the project, in `artifacts/pretrained/flickr8k-lite2/` (an
//! `export` folder: EfficientNet-Lite2 and the attention decoder, trained on Flickr8k by that
//! folder's `build.sh`): the model a command uses when it is given none.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Result};
use captioner_model::ModelFiles;

/// The shipped model's folder in the source tree the binary was built from: `cargo run`
/// finds it, and so does a binary installed with `cargo install --path .` while that tree is
/// there.
pub const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/artifacts/pretrained/flickr8k-lite2"
);

/// The environment variable that names the model to use when none is given (a run or an
/// `export` folder), for a binary whose source tree is gone.
pub const MODEL_VARIABLE: &str = "CAPTIONER_MODEL";

/// The model folders to load: those `given` when there are any (several caption together);
/// else `from_env` (the value of [`MODEL_VARIABLE`]); else [`SHIPPED`]. With the line that
/// says which, when none was given; an error that says what to do when the default folder
/// holds no model.
pub fn models_or_default(
    given: Vec<PathBuf>,
    from_env: Option<OsString>,
) -> Result<(Vec<PathBuf>, Option<String>)> {
    if !given.is_empty() {
        return Ok((given, None));
    }
    let (folder, said) = match from_env.filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            let said = format!("Model: {} (from {MODEL_VARIABLE})", path.display());
            (path, said)
        }
        None => {
            let path = PathBuf::from(SHIPPED);
            let said = format!(
                "Model: the shipped Flickr8k captioner ({}; --model picks another)",
                path.display()
            );
            (path, said)
        }
    };
    let files = ModelFiles::new(&folder);
    if !files.is_export() && !files.weights().with_extension("mpk").is_file() {
        bail!(
            "no model was given, and {} holds none: pass --model with a run folder (from \
             `train`) or an `export` folder, set {MODEL_VARIABLE} to one, or rebuild the \
             shipped one with artifacts/pretrained/flickr8k-lite2/build.sh",
            folder.display()
        );
    }
    Ok((vec![folder], Some(said)))
}

/// [`models_or_default`] with this process's environment; says on stderr which model it took
/// when none was given.
pub fn choose_models(given: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let (models, said) = models_or_default(given, std::env::var_os(MODEL_VARIABLE))?;
    if let Some(said) = said {
        eprintln!("{said}");
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_given_wins_then_the_variable_then_the_shipped_folder() {
        let given = PathBuf::from("runs/mine");
        let env = Some(OsString::from("/nowhere/model"));
        assert_eq!(
            models_or_default(vec![given.clone()], env.clone()).unwrap(),
            (vec![given], None)
        );
        let err = models_or_default(Vec::new(), env).unwrap_err().to_string();
        assert!(
            err.starts_with("no model was given, and /nowhere/model holds none"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("shipped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"").unwrap();
        let (folder, said) = models_or_default(Vec::new(), Some(dir.clone().into())).unwrap();
        assert_eq!(folder, std::slice::from_ref(&dir));
        assert!(said.unwrap().ends_with("(from CAPTIONER_MODEL)"));
        std::fs::remove_dir_all(&dir).ok();
        // An empty variable is no model named.
        match models_or_default(Vec::new(), Some(OsString::new())) {
            Ok((folder, said)) => {
                assert_eq!(folder, [PathBuf::from(SHIPPED)]);
                assert!(said.unwrap().contains("the shipped Flickr8k captioner"));
            }
            Err(err) => assert!(err.to_string().contains(SHIPPED), "{err}"),
        }
    }
}

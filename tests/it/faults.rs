//! Runs that meet faults: killed at any moment, interrupted, a loss that is not a number,
//! broken run files and settings, as a user meets them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use captioner_model::{Captioning, ModelFiles, WeightsRecorder};

use crate::common::{exec, temp_dir, text, weights_of, Cpu};

/// A small shapes run: 40 training scenes (200 captions) in batches of 8, 25 steps an epoch.
const SMALL: [&str; 10] = [
    "--train-images",
    "40",
    "--valid-images",
    "8",
    "--test-images",
    "8",
    "--batch-size",
    "8",
    "--workers",
    "2",
];

/// The flags of a small run of `epochs` epochs into `out`, then `extra`.
fn small<'a>(out: &'a str, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = SMALL.to_vec();
    args.extend(["--out", out, "--epochs", epochs]);
    args.extend(extra);
    args
}

/// As [`small`], with 400 training scenes (2000 captions, 250 steps an epoch): a run stopped
/// once its first epoch is checkpointed stops early in the second.
fn longer<'a>(out: &'a str, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = small(out, epochs, extra);
    args[1] = "400";
    args
}

/// Sends SIGINT, as Ctrl-C in a terminal does.
fn interrupt(child: &Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
}

fn train(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("train starts")
}

/// A generator of kill times: xorshift from a seed printed by the test, so that a failure can
/// be replayed with `CAPTIONER_KILL_SEED`.
struct Draws(u64);

impl Draws {
    fn fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn a_run_killed_or_interrupted_at_random_moments_and_resumed_ends_with_the_weights_of_an_unbroken_run(
) {
    let dir = temp_dir("kill");
    let unbroken = dir.join("unbroken");
    let started = Instant::now();
    let done = exec("train", &small(unbroken.to_str().unwrap(), "3", &[]));
    assert!(done.status.success(), "{}", text(&done.stderr));
    let mut whole = started.elapsed();

    let seed = std::env::var("CAPTIONER_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill times drawn from CAPTIONER_KILL_SEED={seed}");
    let mut draws = Draws(seed);
    let killed = dir.join("killed");
    let out = killed.to_str().unwrap();
    let (mut kills, mut finished) = (0, false);
    for attempt in 0..12 {
        // A kill that lands after the report is written (while the process exits) leaves a
        // finished run: resuming it is refused as a run with nothing left to train.
        if killed.join("report.json").exists() {
            finished = true;
            break;
        }
        // As a user would: --resume once the run folder exists (a run killed before its
        // first checkpoint starts again from the beginning).
        let resume = killed.join("config.json").exists();
        let resume: &[&str] = if resume { &["--resume"] } else { &[] };
        let attempt_started = Instant::now();
        let mut child = train(&small(out, "3", resume));
        let deadline = Instant::now() + whole.mul_f64(0.05 + 0.9 * draws.fraction());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match status {
            Some(status) => {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).ok();
                assert!(status.success(), "attempt {attempt}: {stderr}");
                if kills == 0 {
                    // The run went faster than the unbroken one did (tests beside it finished):
                    // start over with deadlines drawn from this run's time.
                    whole = attempt_started.elapsed();
                    std::fs::remove_dir_all(&killed).unwrap();
                    continue;
                }
                finished = true;
                break;
            }
            // Every other time Ctrl-C, which checkpoints the step (or finishes the epoch).
            None if attempt % 2 == 0 => {
                interrupt(&child);
                let status = child.wait().unwrap();
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).ok();
                // Before its handler is installed, SIGINT ends the process as SIGKILL does.
                let before_handler = std::os::unix::process::ExitStatusExt::signal(&status);
                assert!(
                    status.success() || status.code() == Some(130) || before_handler == Some(2),
                    "attempt {attempt}: {status}: {stderr}"
                );
                assert!(!stderr.contains("panicked"), "attempt {attempt}: {stderr}");
                kills += 1;
                if status.success() {
                    finished = true;
                    break;
                }
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    if !finished {
        let last = exec("train", &small(out, "3", &["--resume"]));
        assert!(last.status.success(), "{}", text(&last.stderr));
    }
    assert!(kills >= 1, "no kill landed");
    eprintln!("killed {kills} times, then resumed to the end");
    assert_eq!(
        weights_of(&killed),
        weights_of(&unbroken),
        "killed {kills} times (seed {seed}), the run must end where an unbroken one does"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ctrl_c_mid_epoch_checkpoints_the_step_and_the_resumed_run_ends_as_an_unbroken_one() {
    let dir = temp_dir("ctrl-c");
    let unbroken = dir.join("unbroken");
    let done = exec("train", &longer(unbroken.to_str().unwrap(), "2", &[]));
    assert!(done.status.success(), "{}", text(&done.stderr));

    let run = dir.join("run");
    let out = run.to_str().unwrap();
    let child = train(&longer(out, "2", &[]));
    // Once the first epoch is checkpointed, the run is early in the second.
    let started = Instant::now();
    while !run.join("checkpoint/scheduler-1.mpk").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Stopping: the run checkpoints the step"),
        "{stderr}"
    );
    assert!(stderr.contains("training stopped (Ctrl-C)"), "{stderr}");
    assert!(
        stderr.contains(&format!("train --resume --out {out}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (step, steps): (usize, usize) = stderr
        .split("Its last checkpoint is of epoch 2, step ")
        .nth(1)
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(at, _)| at.split_once(" of "))
        .and_then(|(step, steps)| Some((step.parse().ok()?, steps.parse().ok()?)))
        .expect("says the step it stopped at");
    // 2000 captions in batches of 8.
    assert_eq!(steps, 250, "{stderr}");
    assert!((1..steps).contains(&step), "{stderr}");
    assert!(run.join("checkpoint/step/state.json").exists());
    // model.mpk holds a completed, validated epoch: the first.
    assert!(stderr.contains("holds the weights of epoch 1."), "{stderr}");
    let model = Captioning::<Cpu>::load(&ModelFiles::new(&run), &Default::default()).unwrap();
    drop(model);
    assert_eq!(
        std::fs::read(run.join("model.mpk")).unwrap(),
        std::fs::read(run.join("checkpoint/model-1.mpk")).unwrap()
    );

    let resumed = exec("train", &longer(out, "2", &["--resume"]));
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert!(
        text(&resumed.stdout).contains(&format!("from step {step} of {steps} in epoch 2")),
        "{}",
        text(&resumed.stdout)
    );
    assert_eq!(
        weights_of(&run),
        weights_of(&unbroken),
        "stopped at step {step} of epoch 2 and resumed, the run must end where an unbroken one does"
    );
    assert!(
        !run.join("checkpoint/step").exists(),
        "the step checkpoint is removed"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Makes every weight of a module NaN.
struct Spoil;

impl<B: Backend> ModuleMapper<B> for Spoil {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| t.mul_scalar(f32::NAN))
    }
}

#[test]
fn a_loss_that_becomes_nan_stops_the_run_and_keeps_no_spoiled_checkpoint_or_model() {
    let dir = temp_dir("nan");
    // A first stage whose weights went bad (a corrupt file, an earlier run that diverged).
    let first = dir.join("first");
    let done = exec("train", &small(first.to_str().unwrap(), "1", &[]));
    assert!(done.status.success(), "{}", text(&done.stderr));
    let device = Default::default();
    let model = Captioning::<Cpu>::load(&ModelFiles::new(&first), &device).unwrap();
    model
        .model
        .map(&mut Spoil)
        .save_file(first.join("model"), &WeightsRecorder::new())
        .unwrap();

    let run = dir.join("run");
    let mut args = small(run.to_str().unwrap(), "2", &[]);
    args.extend(["--init-from", first.to_str().unwrap()]);
    let done = exec("train", &args);
    let stderr = text(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the loss became NaN at epoch 1, step 1"),
        "{stderr}"
    );
    assert!(stderr.contains("Lower --lr"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.join("model.mpk").exists());
    assert!(!run.join("checkpoint/model-1.mpk").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_truncated_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before() {
    let dir = temp_dir("truncated");
    let run = dir.join("run");
    let out = run.to_str().unwrap();
    let done = exec("train", &small(out, "2", &[]));
    assert!(done.status.success(), "{}", text(&done.stderr));
    let newest = run.join("checkpoint/optim-2.mpk");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();

    let resumed = exec("train", &small(out, "3", &["--resume"]));
    let (stdout, stderr) = (text(&resumed.stdout), text(&resumed.stderr));
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains("the checkpoint of epoch 2 is unusable")
            && stderr.contains("optim-2.mpk is truncated"),
        "{stderr}"
    );
    assert!(stdout.contains("from epoch 1"), "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_files_that_do_not_fit_together_are_refused_with_the_file_named() {
    let dir = temp_dir("mismatch");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (run, hidden) in [(&a, "64"), (&b, "96")] {
        let done = exec(
            "train",
            &small(run.to_str().unwrap(), "1", &["--hidden-dim", hidden]),
        );
        assert!(done.status.success(), "{}", text(&done.stderr));
    }
    let picture = dir.join("p.png");
    image::RgbImage::new(64, 64).save(&picture).unwrap();
    let infer = |run: &Path| {
        let done = exec(
            "infer",
            &["--model", run.to_str().unwrap(), picture.to_str().unwrap()],
        );
        assert_eq!(done.status.code(), Some(2));
        text(&done.stderr)
    };
    // The weights of another model shape.
    std::fs::copy(b.join("model.mpk"), a.join("model.mpk")).unwrap();
    let stderr = infer(&a);
    assert!(
        stderr.contains("model.mpk: its weights do not fit") && stderr.contains("model.json"),
        "{stderr}"
    );
    // Which tensor, and both shapes, in one readable sentence.
    assert!(
        stderr.contains("of the model's parameters is [")
            && stderr.contains(", the model there has ["),
        "{stderr}"
    );
    // A truncated weights file.
    let bytes = std::fs::read(b.join("model.mpk")).unwrap();
    std::fs::write(b.join("model.mpk"), &bytes[..bytes.len() - 1000]).unwrap();
    let stderr = infer(&b);
    assert!(stderr.contains("model.mpk is truncated"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_settings_are_refused_with_a_message_and_no_backtrace() {
    for (flag, value, says) in [
        ("--batch-size", "0", "the batch size"),
        ("--dropout", "1.5", "dropout is a probability"),
        ("--grad-clip", "0", "gradient clipping"),
    ] {
        let done = Command::new(env!("CARGO_BIN_EXE_train"))
            .args([flag, value, "--epochs", "1"])
            .env("RUST_BACKTRACE", "1")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let stderr = text(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stderr.starts_with("error: "), "{flag}: {stderr}");
        assert!(stderr.contains(says), "{flag}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("backtrace"),
            "{flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}

#[test]
fn a_run_that_failed_before_its_first_checkpoint_starts_again_in_the_same_folder() {
    let dir = temp_dir("failed-start");
    let run = dir.join("run");
    let out = run.to_str().unwrap();
    let failed = exec(
        "train",
        &[
            "--dataset",
            "flickr8k",
            "--data-dir",
            dir.join("nowhere").to_str().unwrap(),
            "--out",
            out,
        ],
    );
    assert!(!failed.status.success());
    let again = exec("train", &small(out, "1", &[]));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("stopped before its first checkpoint: starting it over"),
        "{}",
        text(&again.stdout)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_stdout_is_an_error_message_not_a_panic() {
    let dir = temp_dir("full");
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let done = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(small(dir.join("run").to_str().unwrap(), "1", &[]))
        .stdout(full)
        .output()
        .unwrap();
    let stderr = text(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot write to stdout: No space left"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

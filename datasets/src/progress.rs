//! Progress of long work over pictures, on stderr: a bar on a terminal, and otherwise (a log
//! file, CI, `nohup`) a plain line each tenth of the work, at most one every
//! [`PLAIN_LINE_EVERY`], so that a long run's log never goes quiet for minutes.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The least time between two plain lines.
pub const PLAIN_LINE_EVERY: Duration = Duration::from_secs(10);

/// Counts pictures done out of a total; shared by reference between threads (`inc` takes
/// `&self`).
pub struct Progress {
    bar: ProgressBar,
    /// What is being done, e.g. "decoding": the bar's label and the plain lines' first word.
    what: &'static str,
    /// Plain lines instead of the bar (shown, and stderr is not a terminal).
    plain: bool,
    total: u64,
    done: AtomicU64,
    started: Instant,
    /// When the last plain line was written.
    last_line: Mutex<Instant>,
}

impl Progress {
    /// Progress of `what` over `total` pictures; with `show` false nothing is ever written.
    pub fn new(what: &'static str, total: usize, show: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self::to(what, total, show && terminal, show && !terminal)
    }

    fn to(what: &'static str, total: usize, bar: bool, plain: bool) -> Self {
        let bar = if bar {
            ProgressBar::new(total as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:30}} {{pos}}/{{len}} images  {{per_sec}}  eta {{eta}}"
            ))
            .expect("valid template"),
        );
        let started = Instant::now();
        Self {
            bar,
            what,
            plain,
            total: total as u64,
            done: AtomicU64::new(0),
            started,
            last_line: Mutex::new(started),
        }
    }

    /// Counts `n` more pictures done.
    pub fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
        if let Some(line) = self.count(n as u64, Instant::now()) {
            eprintln!("{line}");
        }
    }

    /// Counts `n` more done at `now`, and returns the plain line due, if one is.
    fn count(&self, n: u64, now: Instant) -> Option<String> {
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let done = before + n;
        if !self.plain || done >= self.total {
            return None;
        }
        let tenth = self.total.div_ceil(10).max(1);
        if before / tenth == done / tenth {
            return None;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if now.duration_since(*last) < PLAIN_LINE_EVERY {
            return None;
        }
        *last = now;
        let seconds = now.duration_since(self.started).as_secs_f64().max(1e-9);
        Some(format!(
            "{} {done}/{} images ({:.1}/s)",
            self.what,
            self.total,
            done as f64 / seconds
        ))
    }

    /// Writes a line on stderr without breaking the bar.
    pub fn say(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_a_line_comes_each_tenth_of_the_work_at_most_every_ten_seconds() {
        let progress = Progress::to("caching features", 100, false, true);
        let start = progress.started;
        let at = |s: u64| start + Duration::from_secs(s);
        // A tenth done after 12 s: a line.
        assert_eq!(
            progress.count(10, at(12)).as_deref(),
            Some("caching features 10/100 images (0.8/s)")
        );
        // Within the same tenth: none.
        assert_eq!(progress.count(5, at(30)), None);
        // The next tenth, but 3 s after the last line: none.
        assert_eq!(progress.count(5, at(15)), None);
        // Past two more tenths, 13 s after the last line: one line.
        assert!(progress.count(20, at(25)).unwrap().contains(" 40/100 "));
        // The end is the caller's own line to write.
        assert_eq!(progress.count(60, at(100)), None);
    }

    #[test]
    fn on_a_terminal_or_when_hidden_no_plain_line_is_written() {
        for (bar, plain) in [(true, false), (false, false)] {
            let progress = Progress::to("decoding", 10, bar, plain);
            let later = progress.started + Duration::from_secs(60);
            assert_eq!(progress.count(5, later), None);
        }
    }
}

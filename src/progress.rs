//! Progress on a terminal: `demo`, `run --once` and `validate` of large
//! inputs show a bar (files, letters, bytes) and end with a one-line
//! summary. Only when standard error is a terminal: in a pipe, a file, a
//! test or CI there is no progress output at all, not even an escape code.
//!
//! Log lines written while a bar is shown go through [`suspend`] (see
//! `logging`): the bar is wiped, the line printed, the bar drawn again
//! below it, so neither garbles the other.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar being shown, for [`suspend`].
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Is standard error a terminal (a person watching)?
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Run `f` (which writes to standard error) with the bar out of the way.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    // Clone the handle (an Arc) so the lock is not held while writing.
    let bar = ACTIVE.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// What has been done so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub files: u64,
    pub total_files: u64,
    pub letters: u64,
    pub bytes: u64,
}

/// A progress bar on standard error; cleared when dropped.
pub struct Bar {
    bar: ProgressBar,
    what: &'static str,
    started: Instant,
    last: Counts,
}

impl Bar {
    /// A bar for `what` (e.g. "validate"), or `None` when standard error is
    /// not a terminal.
    pub fn start(what: &'static str) -> Option<Bar> {
        if !on_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} files, {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what);
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(bar.clone());
        }
        Some(Bar {
            bar,
            what,
            started: Instant::now(),
            last: Counts::default(),
        })
    }

    pub fn set(&mut self, c: Counts) {
        self.last = c;
        self.bar.set_length(c.total_files.max(c.files));
        self.bar.set_position(c.files);
        self.bar
            .set_message(format!("{} letters, {}", c.letters, HumanBytes(c.bytes)));
    }

    /// Clear the bar and print one line: what was done, and `detail`.
    pub fn finish(self, detail: &str) {
        let c = self.last;
        let secs = self.started.elapsed().as_secs_f64();
        let line = format!(
            "{}: {} of {} files, {} letters, {} in {secs:.1} s{}{detail}",
            self.what,
            c.files,
            c.total_files.max(c.files),
            c.letters,
            HumanBytes(c.bytes),
            if detail.is_empty() { "" } else { "; " },
        );
        drop(self);
        eprintln!("{line}");
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
        self.bar.finish_and_clear();
    }
}

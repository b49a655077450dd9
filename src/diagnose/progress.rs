//! What `diagnose` shows on stderr while it reads a large cluster or audit log: one spinner per
//! step (a byte bar for the audit log), each cleared when its step ends, so that the terminal
//! holds only the report afterwards.
//!
//! Owns: [`Progress`]. Whether to show anything is decided by `cli` (only when stderr is a
//! terminal); a hidden [`Progress`] draws nothing and costs an atomic add per update.
//! Must not: write to stdout (the report, which may be JSON piped into a program), or draw more
//! often than [`DRAWS_PER_SECOND`].

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A person cannot read faster; and drawing less keeps the cost out of the work it reports.
const DRAWS_PER_SECOND: u8 = 10;
const TICK: Duration = Duration::from_millis(100);

/// The steps of one run, drawn on stderr or nowhere.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bars: MultiProgress,
}

impl Progress {
    /// `show`: draw on stderr; otherwise every step is hidden.
    pub(crate) fn new(show: bool) -> Progress {
        let target = if show {
            ProgressDrawTarget::stderr_with_hz(DRAWS_PER_SECOND)
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    /// A spinner with `message` (and the time it has taken) until the step is finished.
    pub(crate) fn step(&self, message: impl Into<String>) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        if self.bars.is_hidden() {
            return bar;
        }
        // The template is a constant: parsing it cannot fail; if it did, the default style
        // still shows the message.
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(TICK);
        bar
    }

    /// A bar over `total` bytes (read through [`ProgressBar::wrap_read`]).
    pub(crate) fn bytes(&self, message: impl Into<String>, total: u64) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total));
        if self.bars.is_hidden() {
            return bar;
        }
        let template = "{msg} [{bar:30}] {bytes}/{total_bytes} ({elapsed})";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(TICK);
        bar
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn hidden_progress_still_counts_and_passes_the_bytes_through() {
        let progress = Progress::new(false);
        let step = progress.step("listing Secrets");
        assert!(step.is_hidden());
        step.finish_and_clear();
        let bar = progress.bytes("reading the audit log", 5);
        let mut text = String::new();
        bar.wrap_read(&b"hello"[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!((text.as_str(), bar.position()), ("hello", 5));
    }
}

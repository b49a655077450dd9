//! What `tokenwarden bench` shows on stderr while it runs (minutes, with the defaults): a line
//! per phase (connecting, the crypto reference, issuing the token pools, each scenario with its
//! elapsed time against its duration, cleanup, the scale part's steps), each left as a finished
//! line, so that a person sees where the time goes.
//!
//! Owns: [`Progress`] and [`Phase`]. Whether to draw at all is the caller's choice (the binary
//! draws only when stderr is a terminal); hidden, nothing is drawn and no ticker runs.
//! Must not: write to stdout (the report, which may be JSON), or add work to the measured
//! requests: a phase's position is read from the clock or from a counter the phase already
//! keeps, by a ticker task every [`TICK`], never pushed by the workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar is updated and the terminal redrawn, at most.
const TICK: Duration = Duration::from_millis(100);
const DRAWS_PER_SECOND: u8 = 10;

const SPINNER: &str = "{spinner} {prefix:<24} {msg} ({elapsed})";
const TIMED: &str = "  {prefix:<24} [{bar:30}] {elapsed:>3} of {msg}";
const COUNTED: &str = "  {prefix:<24} [{bar:30}] {pos}/{len} ({elapsed})";
const DONE: &str = "✓ {prefix:<24} {msg}";

/// The phases of one run, drawn on stderr or nowhere.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bars: MultiProgress,
}

/// One phase on screen; [`Phase::done`] leaves its line, dropping it unfinished (on an error)
/// leaves it as it was.
pub(crate) struct Phase {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// `show`: draw on stderr; otherwise every phase is hidden.
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

    /// `bar` under this run's draw target, styled; hidden when the run draws nothing.
    fn add(&self, bar: ProgressBar, template: &str, name: &str) -> ProgressBar {
        let bar = self.bars.add(bar);
        // The templates are constants: parsing cannot fail; if it did, the default style
        // would still show the bar.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_owned());
        bar
    }

    /// A spinner, for a phase of unknown length.
    pub(crate) fn step(&self, name: &str, message: impl Into<String>) -> Phase {
        let bar = self.add(ProgressBar::new_spinner(), SPINNER, name);
        if !bar.is_hidden() {
            bar.set_message(message.into());
            bar.enable_steady_tick(TICK);
        }
        Phase { bar, ticker: None }
    }

    /// The elapsed time against `planned` (a scenario's --duration).
    pub(crate) fn timed(&self, name: &str, planned: Duration) -> Phase {
        let total = u64::try_from(planned.as_millis()).unwrap_or(u64::MAX);
        let bar = self.add(ProgressBar::new(total), TIMED, name);
        if bar.is_hidden() {
            return Phase { bar, ticker: None };
        }
        bar.set_message(format!("{}s", planned.as_secs()));
        let started = Instant::now();
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                ticking.set_position(ms.min(total));
            }
        });
        Phase {
            bar,
            ticker: Some(ticker),
        }
    }

    /// `done` (a counter the phase keeps anyway), less `from`, against `total`.
    pub(crate) fn counted(
        &self,
        name: &str,
        total: usize,
        done: Arc<AtomicUsize>,
        from: usize,
    ) -> Phase {
        let len = u64::try_from(total).unwrap_or(u64::MAX);
        let bar = self.add(ProgressBar::new(len), COUNTED, name);
        if bar.is_hidden() {
            return Phase { bar, ticker: None };
        }
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                // Workers take numbers past the end when they stop: clamp.
                let n = done.load(Ordering::Relaxed).saturating_sub(from);
                ticking.set_position(u64::try_from(n).unwrap_or(u64::MAX).min(len));
            }
        });
        Phase {
            bar,
            ticker: Some(ticker),
        }
    }
}

impl Phase {
    /// Leaves the phase as one line: its name and `summary`.
    pub(crate) fn done(mut self, summary: impl Into<String>) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Ok(style) = ProgressStyle::with_template(DONE) {
            self.bar.set_style(style);
        }
        self.bar.finish_with_message(summary.into());
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hidden_progress_runs_no_ticker() {
        let progress = Progress::new(false);
        let counter = Arc::new(AtomicUsize::new(3));
        for phase in [
            progress.step("connect", "to a server"),
            progress.timed("noop", Duration::from_secs(1)),
            progress.counted("issue", 10, counter, 0),
        ] {
            assert!(phase.ticker.is_none());
            assert!(phase.bar.is_hidden());
            phase.done("ok");
        }
    }
}

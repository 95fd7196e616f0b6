//! A progress bar for long runs (`sweep`, `replay --seeds`): seeds done,
//! failures so far and the rate, drawn with indicatif on stderr when
//! stderr is a terminal, and nothing otherwise.
//!
//! # What this module owns
//!
//! Counting runs done and failed, and drawing them.
//!
//! # What it must never do
//!
//! Write anything when stderr is not a terminal (CI logs, pipes, files),
//! or touch stdout: reports and reproduce lines go there, and must stay
//! identical between runs.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of a run of `total` seeds (see the [module docs](self)).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    done: u64,
    failed: u64,
}

impl Progress {
    /// A progress bar for `total` seeds, shown only if stderr is a
    /// terminal.
    pub fn new(total: u64) -> Progress {
        Progress::with_visibility(total, std::io::stderr().is_terminal())
    }

    /// A progress bar drawn on stderr if `visible`, else hidden.
    pub fn with_visibility(total: u64, visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        // The template is a constant, so this cannot fail in practice;
        // if it did, the default style still counts.
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} seeds, {msg}, {per_sec}, eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("0 failed");
        Progress {
            bar,
            done: 0,
            failed: 0,
        }
    }

    /// One more seed done; `failed` if it failed.
    pub fn inc(&mut self, failed: bool) {
        self.done += 1;
        if failed {
            self.failed += 1;
            self.bar.set_message(format!("{} failed", self.failed));
        }
        self.bar.inc(1);
    }

    /// Seeds done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Seeds failed so far.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Whether the bar is drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Removes the bar from the terminal (whatever is printed next starts
    /// on a clean line). Counting may go on; the bar is not drawn again.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_bar_still_counts_seeds_and_failures() {
        let mut p = Progress::with_visibility(5, false);
        assert!(!p.is_visible());
        p.inc(false);
        p.inc(true);
        p.inc(false);
        p.inc(true);
        assert_eq!((p.done(), p.failed()), (4, 2));
        p.finish();
    }
}

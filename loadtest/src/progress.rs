//! A progress bar per long phase, on stderr (hidden when stderr is not a terminal), ending with
//! the phase's one-line result.

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress(ProgressBar);

impl Progress {
    /// A bar for `phase`, `len` steps long.
    pub fn new(phase: &str, len: u64) -> Progress {
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.to_owned());
        Progress(bar)
    }

    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Ends the bar and prints the phase's result under it.
    pub fn finish(&self, result: &str) {
        self.0.finish_and_clear();
        eprintln!("{:>28}  {result}", self.0.prefix());
    }
}

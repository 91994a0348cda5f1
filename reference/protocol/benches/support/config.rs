//! The criterion settings every crate's `hot_paths` bench runs with (included by path): short
//! runs, so all four benches finish in a few minutes on two cores.

use criterion::Criterion;
use std::time::Duration;

pub fn short() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

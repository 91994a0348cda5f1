//! The figures of a run as they are gathered, local or remote: named values (DESIGN §12 names,
//! units in the names), each figure's floor, the samples behind them, and notes.

use crate::measure::{delta, start};
use crate::report::Series;
use crate::stats::percentile;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Figures {
    pub kpis: BTreeMap<String, f64>,
    /// A figure's name → the name of its floor.
    pub floors: BTreeMap<String, String>,
    pub series: Series,
    pub notes: Vec<String>,
    /// What the deployment's `GET /metrics` said while the agents were following the edits.
    pub scrape: Option<String>,
}

impl Figures {
    /// Records `value` as `name` when there is one (and it is finite).
    pub fn put(&mut self, name: &str, value: Option<f64>) {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            self.kpis.insert(name.to_owned(), value);
        }
    }

    /// `{prefix}_p50_ms`, `_p95_ms`, `_p99_ms` of `samples`.
    pub fn percentiles(&mut self, prefix: &str, samples: &[f64]) {
        for p in [50, 95, 99] {
            self.put(&format!("{prefix}_p{p}_ms"), percentile(samples, f64::from(p)));
        }
    }

    /// Session starts of one kind (`small`, `large_warm`, ...).
    pub fn starts(&mut self, kind: &str, starts: start::Starts) {
        self.percentiles(&format!("start_{kind}"), &starts.samples_ms);
        self.series.start_ms.insert(kind.to_owned(), starts.samples_ms);
        self.series.start_phases_ms.insert(kind.to_owned(), starts.phases_ms);
    }

    /// Edits to a fleet of agents: when they landed, when they were answered, how many.
    pub fn deltas(&mut self, deltas: delta::Deltas) {
        self.percentiles("delta", &deltas.samples_ms);
        self.percentiles("delta_acked", &deltas.acked_ms);
        self.put("delta_applied_fraction", Some(deltas.applied()));
        self.put("delta_failed_edits", Some(deltas.failed_edits as f64));
        self.put("delta_wrong_content", Some(deltas.wrong_content as f64));
        self.series.delta_ms = deltas.samples_ms;
    }
}

//! What a KPI run found, as `report.json` holds it (DESIGN §12): a flat `kpis` object whose
//! names carry their unit (`start_small_p50_ms`, `upserts_per_s`), the samples behind them
//! (`series`, for the plots), the machine and the parameters, and notes on what was left out.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The report's format version.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    /// `local`: everything started here, floors included; `remote`: the client-side figures
    /// against a deployment (`--api`).
    pub mode: Mode,
    pub quick: bool,
    pub machine: Machine,
    /// The run's parameters (sessions, agents, edit rate, durations, fixture sizes and seeds).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Every figure, by name with its unit.
    pub kpis: BTreeMap<String, f64>,
    /// For a figure that has one, the floor measured beside it (`delivered_p50_ms` →
    /// `floor_notify_p50_ms`): the report shows the ratio.
    pub floors: BTreeMap<String, String>,
    pub series: Series,
    /// What was left out and why, and anything a reader must know about the figures.
    pub notes: Vec<String>,
    /// The server's `GET /metrics` (Prometheus text), scraped at the end of the edits while the
    /// agents still followed; `kpi` also writes it to `DIR/metrics.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_scrape: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Local,
    Remote,
}

/// Where the run ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu: String,
    pub os: String,
    /// The PostgreSQL server's version (local runs).
    pub postgres: Option<String>,
}

/// The samples behind the figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Session request → `running`, one sample per session, by kind (`small`, `legacy_small`,
    /// `large_warm`, `large_cold`, `legacy_large`).
    pub start_ms: BTreeMap<String, Vec<f64>>,
    /// The median of each start phase (`snapshot`, `spawn`, `join`, `download`, `extract`,
    /// `catch_up`, `hydrate`, ...) by kind, as the sessions' `timings_ms` report them.
    pub start_phases_ms: BTreeMap<String, BTreeMap<String, f64>>,
    /// Edit RPC sent → applied on an agent's disk, one sample per (edit, agent).
    pub delta_ms: Vec<f64>,
    /// PostgreSQL commit → `LISTEN` notification (the floor of delivery).
    pub floor_notify_ms: Vec<f64>,
    /// Commit → delivered on a WebSocket.
    pub delivered_ms: Vec<f64>,
    /// One event to 1,000 joined sockets: first write → last socket's delivery.
    pub fanout_ms: Vec<f64>,
    /// Offered upsert rate against what was achieved, stepped to find the knee.
    pub throughput: Vec<ThroughputStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputStep {
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }
}

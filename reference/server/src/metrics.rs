//! What an instance has done, for `GET /metrics` (Prometheus text format 0.0.4; DESIGN §12):
//! RPC durations by function and outcome, snapshot builds and sizes, session start phases, event
//! lag by stage (commit → delivered here; commit → applied as agents report it), open
//! WebSockets, channel joins by outcome, what each surface throttled, the live sessions this
//! instance runs by status (a preview whose agent stopped following reads `behind`), the sessions
//! it ran that ended (stopped or failed), write calls that failed or were throttled (edits that
//! did not persist), snapshot builds that failed, and the times its `LISTEN` feed was lost and
//! caught up (resyncs).
//!
//! Every label takes its values from a fixed set, whatever callers send: an unknown function or
//! phase is counted as `other`, so no caller can make the instance hold an unbounded number of
//! series.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the duration buckets, in seconds: 0.5 ms to 30 s, with a bound at each budget
/// of DESIGN §11 (2 ms, 10 ms and 500 ms for an edit; 600 ms, 1.5 s and 15 s for a start).
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 1.0, 1.5, 2.5, 5.0, 10.0, 15.0, 30.0,
];
/// Upper bounds of the size buckets, in bytes: 1 KiB to 1 GiB, by fours.
const BYTES: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

/// The functions that write a project's files (the SQL API's, and the table writes of
/// unmigrated clients on `legacy_project_files`): an edit is one of these calls.
const WRITES: &[&str] = &[
    fsync_store::data::WRITABLE_RELATION,
    "upsert_project_file",
    "delete_project_file",
    "bulk_upsert_project_files",
    "upsert_project_binary",
];
/// The other functions counted by name; any function in neither list is `other`.
const OTHER_FUNCTIONS: &[&str] = &[
    "list_current_files",
    "list_changes_since",
    "create_project",
    "ensure_user_profile",
    "add_project_member",
    "remove_project_member",
    "list_project_members",
];
/// Why a write call failed, as `fsync_write_failures_total` counts it.
const WRITE_FAILURES: &[&str] = &["server_error", "throttled"];

/// The session start phases counted by name (the orchestrator's and the agent's); any other is
/// `other`.
const PHASES: &[&str] = &[
    "snapshot",
    "snapshot_built",
    "snapshot_reused",
    "spawn",
    "join",
    "download",
    "extract",
    "catch_up",
    "exec",
    "dev_server",
    "hydrate",
    "total",
];

/// The final session statuses `fsync_sessions_ended_total` counts (any other is `other`).
const ENDED_STATUSES: &[&str] = &["stopped", "failed"];
/// The live session statuses `fsync_sessions` counts (a final one leaves the count).
const LIVE_STATUSES: &[&str] = &["starting", "hydrating", "running", "behind"];

/// A surface that refuses what is over its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Surface {
    /// The write RPCs (`PT429`).
    Rpc,
    /// A socket's frames.
    RealtimeMessages,
    /// A socket's joins.
    RealtimeJoins,
    /// A member's live sessions.
    Sessions,
}

impl Surface {
    const ALL: [Surface; 4] = [Surface::Rpc, Surface::RealtimeMessages, Surface::RealtimeJoins, Surface::Sessions];

    fn label(self) -> &'static str {
        match self {
            Surface::Rpc => "rpc",
            Surface::RealtimeMessages => "realtime_messages",
            Surface::RealtimeJoins => "realtime_joins",
            Surface::Sessions => "sessions",
        }
    }
}

/// How an event's lag was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// From the write's transaction to this instance's fan-out.
    Delivered,
    /// From the write's transaction to an agent's disk, as agents report it.
    Applied,
}

/// A cumulative histogram over fixed buckets.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// The `_bucket`, `_sum` and `_count` lines, `labels` (`key="value",...` or empty) on each.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Cloned to render, so rendering holds no lock.
#[derive(Default, Clone)]
struct Recorded {
    rpc: BTreeMap<(&'static str, u16), Histogram>,
    snapshot_build: Option<Histogram>,
    snapshot_bytes: Option<Histogram>,
    session_start: BTreeMap<&'static str, Histogram>,
    event_lag: BTreeMap<Stage, Histogram>,
    joins: BTreeMap<&'static str, u64>,
    rate_limited: BTreeMap<Surface, u64>,
    sessions_ended: BTreeMap<&'static str, u64>,
    /// Write calls answered 5xx (`server_error`) or 429 (`throttled`).
    write_failures: BTreeMap<&'static str, u64>,
    /// Live sessions by status.
    sessions: BTreeMap<&'static str, i64>,
    snapshot_failures: u64,
    resyncs: u64,
}

/// One instance's metrics.
#[derive(Default)]
pub struct Metrics {
    recorded: Mutex<Recorded>,
    websockets: AtomicI64,
}

impl Metrics {
    fn record<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.recorded.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// An RPC answered with `status` after `seconds`.
    pub fn rpc(&self, function: &str, status: u16, seconds: f64) {
        let function = WRITES.iter().chain(OTHER_FUNCTIONS).find(|f| **f == function).copied().unwrap_or("other");
        self.record(|r| r.rpc.entry((function, status)).or_insert_with(|| Histogram::new(SECONDS)).observe(seconds));
        if status == 429 {
            self.rate_limited(Surface::Rpc);
        }
        let failure = match status {
            429 => Some("throttled"),
            500.. => Some("server_error"),
            _ => None,
        };
        if let Some(reason) = failure.filter(|_| WRITES.contains(&function)) {
            self.record(|r| *r.write_failures.entry(reason).or_default() += 1);
        }
    }

    /// A snapshot built in `seconds`, its zip `bytes` long.
    pub fn snapshot_built(&self, seconds: f64, bytes: u64) {
        self.record(|r| {
            r.snapshot_build.get_or_insert_with(|| Histogram::new(SECONDS)).observe(seconds);
            r.snapshot_bytes.get_or_insert_with(|| Histogram::new(BYTES)).observe(bytes as f64);
        });
    }

    /// A session that reached `running`, its phases in milliseconds.
    pub fn session_started<'a>(&self, timings_ms: impl IntoIterator<Item = (&'a String, &'a f64)>) {
        self.record(|r| {
            for (phase, ms) in timings_ms {
                let phase = PHASES.iter().find(|p| **p == phase).copied().unwrap_or("other");
                r.session_start.entry(phase).or_insert_with(|| Histogram::new(SECONDS)).observe(ms / 1000.0);
            }
        });
    }

    /// An event's lag at `stage`, in seconds.
    pub fn event_lag(&self, stage: Stage, seconds: f64) {
        self.record(|r| r.event_lag.entry(stage).or_insert_with(|| Histogram::new(SECONDS)).observe(seconds));
    }

    /// A WebSocket opened (`1`) or closed (`-1`).
    pub fn websockets(&self, change: i64) {
        self.websockets.fetch_add(change, Ordering::Relaxed);
    }

    /// A channel join answered with `outcome` (`ok`, `denied`, `error`, `rate_limited`).
    pub fn join(&self, outcome: &'static str) {
        self.record(|r| *r.joins.entry(outcome).or_default() += 1);
    }

    /// Something `surface` refused as over its rate.
    pub fn rate_limited(&self, surface: Surface) {
        self.record(|r| *r.rate_limited.entry(surface).or_default() += 1);
    }

    /// A session this instance ran ended `stopped` or `failed` (any other status is `other`).
    pub fn session_ended(&self, status: &str) {
        let status = ENDED_STATUSES.iter().find(|s| **s == status).copied().unwrap_or("other");
        self.record(|r| *r.sessions_ended.entry(status).or_default() += 1);
    }

    /// A session of this instance moved `from` one status (`None`: it is new) `to` another; a
    /// final status (or one not known) is not counted.
    pub fn session_status(&self, from: Option<&str>, to: &str) {
        let live = |status: &str| LIVE_STATUSES.iter().find(|s| **s == status).copied();
        self.record(|r| {
            if let Some(from) = from.and_then(live) {
                *r.sessions.entry(from).or_default() -= 1;
            }
            if let Some(to) = live(to) {
                *r.sessions.entry(to).or_default() += 1;
            }
        });
    }

    /// A snapshot build failed (a server-side error, not a missing project).
    pub fn snapshot_build_failed(&self) {
        self.record(|r| r.snapshot_failures += 1);
    }

    /// The `LISTEN` feed was lost and caught up again.
    pub fn resync(&self) {
        self.record(|r| r.resyncs += 1);
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let r = self.record(|r| r.clone());
        let mut out = String::new();
        let help = "RPC calls (and table writes on legacy_project_files) by function and HTTP status.";
        family(&mut out, "fsync_rpc_duration_seconds", "histogram", help);
        for ((function, status), h) in &r.rpc {
            h.render(&mut out, "fsync_rpc_duration_seconds", &format!("function=\"{function}\",outcome=\"{status}\""));
        }
        family(&mut out, "fsync_snapshot_build_seconds", "histogram", "Snapshot builds (read, zip, store).");
        r.snapshot_build.unwrap_or_else(|| Histogram::new(SECONDS)).render(
            &mut out,
            "fsync_snapshot_build_seconds",
            "",
        );
        family(&mut out, "fsync_snapshot_bytes", "histogram", "Sizes of the snapshot zips built.");
        r.snapshot_bytes.unwrap_or_else(|| Histogram::new(BYTES)).render(&mut out, "fsync_snapshot_bytes", "");
        family(&mut out, "fsync_session_start_seconds", "histogram", "Phases of the sessions that reached running.");
        // Every known phase and stage from the start (zero until observed), so that the first
        // observations count in a rate: a series that appears with them reads as no increase.
        let empty = Histogram::new(SECONDS);
        let phases = PHASES.iter().copied().chain(r.session_start.contains_key("other").then_some("other"));
        for phase in phases {
            let h = r.session_start.get(phase).unwrap_or(&empty);
            h.render(&mut out, "fsync_session_start_seconds", &format!("phase=\"{phase}\""));
        }
        family(&mut out, "fsync_event_lag_seconds", "histogram", "From a write's transaction to each stage.");
        for (stage, label) in [(Stage::Delivered, "delivered"), (Stage::Applied, "applied")] {
            let h = r.event_lag.get(&stage).unwrap_or(&empty);
            h.render(&mut out, "fsync_event_lag_seconds", &format!("stage=\"{label}\""));
        }
        family(&mut out, "fsync_websocket_connections", "gauge", "Open Realtime WebSockets.");
        let _ = writeln!(out, "fsync_websocket_connections {}", self.websockets.load(Ordering::Relaxed));
        family(&mut out, "fsync_channel_joins_total", "counter", "Channel joins by outcome.");
        for (outcome, n) in &r.joins {
            let _ = writeln!(out, "fsync_channel_joins_total{{outcome=\"{outcome}\"}} {n}");
        }
        family(&mut out, "fsync_rate_limited_total", "counter", "What each surface refused as over its rate.");
        let limited = Surface::ALL.map(|s| (s.label(), r.rate_limited.get(&s).copied().unwrap_or(0)));
        samples(&mut out, "fsync_rate_limited_total", "surface", limited);
        family(&mut out, "fsync_sessions", "gauge", "Live sessions this instance runs, by status.");
        samples(&mut out, "fsync_sessions", "status", from_zero(LIVE_STATUSES, &r.sessions));
        family(&mut out, "fsync_sessions_ended_total", "counter", "Sessions this instance ran that ended, by status.");
        samples(&mut out, "fsync_sessions_ended_total", "status", from_zero(ENDED_STATUSES, &r.sessions_ended));
        let help = "Write calls (edits) answered 5xx (server_error) or 429 (throttled): edits that did not persist.";
        family(&mut out, "fsync_write_failures_total", "counter", help);
        samples(&mut out, "fsync_write_failures_total", "reason", from_zero(WRITE_FAILURES, &r.write_failures));
        family(&mut out, "fsync_snapshot_build_failures_total", "counter", "Snapshot builds that failed.");
        let _ = writeln!(out, "fsync_snapshot_build_failures_total {}", r.snapshot_failures);
        family(&mut out, "fsync_realtime_resyncs_total", "counter", "Times the LISTEN feed was lost and caught up.");
        let _ = writeln!(out, "fsync_realtime_resyncs_total {}", r.resyncs);
        out
    }
}

/// One sample of `name` per `(value, n)`, labelled `label="value"`.
fn samples<N: std::fmt::Display>(
    out: &mut String,
    name: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'static str, N)>,
) {
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// Every value of `known` with its count in `counted` (0 when it has none yet: present from the
/// start, so that its first observations count in a rate).
fn from_zero<'a, N: Copy + Default>(
    known: &'a [&'static str],
    counted: &'a BTreeMap<&'static str, N>,
) -> impl Iterator<Item = (&'static str, N)> + 'a {
    known.iter().map(|value| (*value, counted.get(value).copied().unwrap_or_default()))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_come_from_fixed_sets() {
        let metrics = Metrics::default();
        metrics.rpc("upsert_project_file", 200, 0.002);
        metrics.rpc("upsert_project_file", 200, 0.2);
        metrics.rpc("upsert_project_file", 429, 0.001);
        metrics.rpc("list_current_files", 429, 0.001);
        metrics.rpc("list_current_files", 503, 0.001);
        metrics.rpc("made_up_function_1", 404, 0.001);
        metrics.rpc("made_up_function_2", 404, 0.001);
        metrics.snapshot_built(0.05, 5000);
        metrics.session_started([(&"download".to_owned(), &12.0), (&"x".repeat(60), &1.0)]);
        metrics.event_lag(Stage::Delivered, 0.0007);
        metrics.websockets(1);
        metrics.websockets(1);
        metrics.websockets(-1);
        metrics.join("ok");
        metrics.join("denied");
        metrics.rate_limited(Surface::RealtimeJoins);
        metrics.session_ended("failed");
        metrics.session_ended("made-up");
        for (from, to) in [(None, "starting"), (Some("starting"), "running"), (Some("running"), "behind")] {
            metrics.session_status(from, to);
        }
        metrics.session_status(None, "starting");
        metrics.session_status(Some("starting"), "failed");
        metrics.session_status(None, "made-up");
        metrics.snapshot_build_failed();
        metrics.resync();
        let text = metrics.render();
        let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
        let ok = "fsync_rpc_duration_seconds_bucket{function=\"upsert_project_file\",outcome=\"200\",";
        assert_eq!(line(&format!("{ok}le=\"0.001\"}}")).as_deref(), Some(&*format!("{ok}le=\"0.001\"}} 0")));
        assert_eq!(line(&format!("{ok}le=\"0.0025\"}}")).as_deref(), Some(&*format!("{ok}le=\"0.0025\"}} 1")));
        assert_eq!(line(&format!("{ok}le=\"+Inf\"}}")).as_deref(), Some(&*format!("{ok}le=\"+Inf\"}} 2")));
        assert!(text.contains("fsync_rpc_duration_seconds_count{function=\"other\",outcome=\"404\"} 2"), "{text}");
        assert!(!text.contains("made_up"), "an unknown function is `other`");
        assert!(text.contains("fsync_snapshot_bytes_bucket{le=\"16384\"} 1"), "{text}");
        assert!(text.contains("fsync_snapshot_build_seconds_count 1"), "{text}");
        assert!(text.contains("fsync_session_start_seconds_sum{phase=\"download\"} 0.012"), "{text}");
        assert!(text.contains("fsync_session_start_seconds_count{phase=\"other\"} 1"), "{text}");
        assert!(text.contains("fsync_event_lag_seconds_bucket{stage=\"delivered\",le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("fsync_event_lag_seconds_count{stage=\"applied\"} 0"), "present from the start: {text}");
        assert!(
            text.contains("fsync_session_start_seconds_count{phase=\"total\"} 0"),
            "present from the start: {text}"
        );
        assert!(text.contains("fsync_websocket_connections 1"), "{text}");
        assert!(text.contains("fsync_channel_joins_total{outcome=\"denied\"} 1"), "{text}");
        assert!(text.contains("fsync_rate_limited_total{surface=\"rpc\"} 2"), "a 429 counts as throttled");
        assert!(text.contains("fsync_write_failures_total{reason=\"throttled\"} 1"), "a write refused: {text}");
        assert!(text.contains("fsync_write_failures_total{reason=\"server_error\"} 0"), "a read is no edit: {text}");
        assert!(text.contains("fsync_rate_limited_total{surface=\"realtime_joins\"} 1"), "{text}");
        assert!(text.contains("fsync_rate_limited_total{surface=\"sessions\"} 0"), "present from the start: {text}");
        assert!(text.contains("fsync_sessions{status=\"behind\"} 1"), "{text}");
        assert!(text.contains("fsync_sessions{status=\"running\"} 0"), "it moved on: {text}");
        assert!(text.contains("fsync_sessions{status=\"starting\"} 0"), "one moved on, one failed: {text}");
        assert!(!text.contains("made-up"), "an unknown status is not counted");
        assert!(text.contains("fsync_sessions_ended_total{status=\"failed\"} 1"), "{text}");
        assert!(text.contains("fsync_sessions_ended_total{status=\"stopped\"} 0"), "present from the start: {text}");
        assert!(text.contains("fsync_snapshot_build_failures_total 1"), "{text}");
        assert!(text.contains("fsync_realtime_resyncs_total 1"), "{text}");
        for family in [
            "fsync_rpc_duration_seconds",
            "fsync_snapshot_build_seconds",
            "fsync_snapshot_bytes",
            "fsync_session_start_seconds",
            "fsync_event_lag_seconds",
            "fsync_websocket_connections",
            "fsync_channel_joins_total",
            "fsync_rate_limited_total",
            "fsync_sessions_ended_total",
            "fsync_sessions",
            "fsync_write_failures_total",
            "fsync_snapshot_build_failures_total",
            "fsync_realtime_resyncs_total",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}

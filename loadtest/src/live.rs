//! The budgets' figures on live traffic (`gate --prometheus URL --window W`): each figure a
//! rollout can be judged on live, as PromQL over the last `W` of what Prometheus scraped from
//! every instance's `GET /metrics`. A figure with no live reading (a floor, a capacity sweep,
//! a start by project size) is not measured, so a gate on it fails.

use anyhow::{bail, Context};
use fsync_client::transport::{self, Transport};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one query may take.
const QUERY_WITHIN: Duration = Duration::from_secs(30);
/// The most a query's answer may hold.
const ANSWER_LIMIT: usize = 1 << 20;

/// The write calls an edit is made of (a table write on `legacy_project_files` included).
const WRITES: &str =
    "upsert_project_file|delete_project_file|bulk_upsert_project_files|upsert_project_binary|legacy_project_files";

/// One figure read live: its name in the budgets, its PromQL (`$window` is the window) and
/// what it means there, when that differs from a KPI run's figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveFigure {
    pub kpi: &'static str,
    pub promql: &'static str,
    pub means: &'static str,
}

/// Every figure with a live reading.
pub const FIGURES: &[LiveFigure] = &[
    LiveFigure {
        kpi: "start_small_p50_ms",
        promql: r#"1000 * histogram_quantile(0.5, sum by (le) (rate(fsync_session_start_seconds_bucket{phase="total"}[$window])))"#,
        means: "session request → running, the median of every start in the window (live starts are not told apart by project size)",
    },
    LiveFigure {
        kpi: "delta_p50_ms",
        promql: r#"1000 * histogram_quantile(0.5, sum by (le) (rate(fsync_event_lag_seconds_bucket{stage="applied"}[$window])))"#,
        means: "commit → applied on the previews' disks, as their agents report it (a KPI run times from the RPC sent)",
    },
    LiveFigure {
        kpi: "delta_p99_ms",
        promql: r#"1000 * histogram_quantile(0.99, sum by (le) (rate(fsync_event_lag_seconds_bucket{stage="applied"}[$window])))"#,
        means: "commit → applied on the previews' disks, 99th percentile",
    },
    LiveFigure {
        kpi: "delta_applied_fraction",
        promql: r#"1 - max_over_time((sum(fsync_sessions{status="behind"}) / sum(fsync_sessions{status=~"running|behind"}))[$window:])"#,
        means: "the least fraction of the live previews applying edits at any moment of the window (the others' agents went silent or lost their feed)",
    },
    LiveFigure {
        kpi: "delta_failed_edits",
        promql: r#"sum(increase(fsync_rpc_duration_seconds_count{function=~"$writes",outcome=~"5..|429"}[$window])) or vector(0)"#,
        means: "write calls the deployment failed (5xx) or throttled (429) in the window (none answered so: 0)",
    },
    LiveFigure {
        kpi: "upserts_p99_ms",
        promql: r#"1000 * histogram_quantile(0.99, sum by (le) (rate(fsync_rpc_duration_seconds_bucket{function="upsert_project_file",outcome="200"}[$window])))"#,
        means: "upsert_project_file answered 200, 99th percentile, at the live rate (a KPI run's is at its knee)",
    },
];

impl LiveFigure {
    /// The figure named `kpi`, if it has a live reading.
    pub fn named(kpi: &str) -> Option<&'static LiveFigure> {
        FIGURES.iter().find(|f| f.kpi == kpi)
    }

    /// Its PromQL over `window` (a checked [`Window`]).
    pub fn query(&self, window: &Window) -> String {
        self.promql.replace("$window", &window.0).replace("$writes", WRITES)
    }
}

/// A PromQL range (`10m`, `1h30m`, `90s`): digits and units only, so it cannot change a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window(String);

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        let refused = || format!("a window is a Prometheus duration such as 10m or 1h30m, not {text:?}");
        // Longest unit first: `ms` before `m`.
        let units = ["ms", "s", "m", "h", "d", "w", "y"];
        let mut rest = text;
        if rest.is_empty() {
            return Err(refused());
        }
        while !rest.is_empty() {
            let after = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let unit = units.iter().find(|u| after.starts_with(**u)).ok_or_else(refused)?;
            if after.len() == rest.len() {
                return Err(refused());
            }
            rest = &after[unit.len()..];
        }
        Ok(Window(text.to_owned()))
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Prometheus server's HTTP API.
pub struct Prometheus {
    url: String,
    transport: Transport,
}

impl Prometheus {
    /// `url`: `http://host:port` (plain HTTP).
    pub fn new(url: &str) -> anyhow::Result<Prometheus> {
        if !url.starts_with("http://") {
            bail!("--prometheus takes an http:// URL (this client speaks plain HTTP), not {url}");
        }
        Ok(Prometheus { url: url.trim_end_matches('/').to_owned(), transport: Transport::tcp() })
    }

    /// An instant query's single value: `None` when it returns no series or not a number (no
    /// traffic in the window reads NaN); an error when it returns several series or fails.
    pub async fn value(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let url = format!("{}/api/v1/query?query={}", self.url, transport::encode(promql));
        let request = transport::request(http::Method::GET, &url, &[], Vec::<u8>::new())?;
        let answer = self
            .transport
            .fetch(request, ANSWER_LIMIT, QUERY_WITHIN)
            .await
            .with_context(|| format!("query Prometheus at {}", self.url))?;
        let body: Value = serde_json::from_slice(&answer.body)
            .with_context(|| format!("Prometheus answered HTTP {}: {}", answer.status, answer.text()))?;
        if body["status"] != "success" {
            bail!("Prometheus refused {promql}: {} {}", body["errorType"], body["error"]);
        }
        let series = body["data"]["result"].as_array().cloned().unwrap_or_default();
        if series.len() > 1 {
            bail!("{promql} returned {} series, not one", series.len());
        }
        let value = series.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
        Ok(value.filter(|v| v.is_finite()))
    }
}

/// Every live figure over the last `window`: those with a reading.
pub async fn measure(prometheus: &Prometheus, window: &Window) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut kpis = BTreeMap::new();
    for figure in FIGURES {
        let query = figure.query(window);
        let value = prometheus.value(&query).await.with_context(|| format!("{}: {query}", figure.kpi))?;
        if let Some(value) = value {
            kpis.insert(figure.kpi.to_owned(), value);
        }
    }
    Ok(kpis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_a_duration_and_nothing_else() {
        for ok in ["10m", "1h30m", "90s", "500ms", "2d", "1w"] {
            assert_eq!(Window::parse(ok).map(|w| w.to_string()), Ok(ok.to_owned()));
        }
        for bad in ["", "10", "m", "10 m", "10m]", "5m) or vector(1", "1x", "10mss"] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queries_name_their_window_and_the_write_calls() {
        let window = Window::parse("10m").unwrap();
        for figure in FIGURES {
            let query = figure.query(&window);
            assert!(query.contains("[10m") && !query.contains('$'), "{query}");
        }
        let failed = LiveFigure::named("delta_failed_edits").unwrap().query(&window);
        assert!(failed.contains("upsert_project_file|delete_project_file"), "{failed}");
        assert!(LiveFigure::named("start_large_warm_p50_ms").is_none(), "no live reading by size");
    }
}

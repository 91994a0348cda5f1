//! The budgets' figures on live traffic (`gate --prometheus URL --window W`): each figure a
//! rollout can be judged on live, as PromQL over the last `W` of what Prometheus scraped from
//! every instance's `GET /metrics`. A figure with no live reading (a floor, a capacity sweep,
//! a start by project size) is not measured, so a gate on it fails.

use crate::budgets::Verdict;
use anyhow::{bail, Context};
use fsync_client::transport::{self, Transport};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one query may take.
const QUERY_WITHIN: Duration = Duration::from_secs(30);
/// The most a query's answer may hold.
const ANSWER_LIMIT: usize = 1 << 20;

/// How many points a subquery looks at across its window.
const SUBQUERY_POINTS: u64 = 240;

/// One figure read live: its name in the budgets, its PromQL (`$window` is the window, `$step`
/// a subquery's step across it) and what it means there.
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
        promql: r#"1 - max_over_time((sum(fsync_sessions{status="behind"}) / sum(fsync_sessions{status=~"running|behind"}))[$window:$step])"#,
        means: "the least fraction of the live previews applying edits at any moment of the window (the others' agents went silent or lost their feed)",
    },
    LiveFigure {
        kpi: "delta_failed_edits",
        promql: r#"sum(increase(fsync_write_failures_total[$window]))"#,
        means: "write calls (edits) the deployment answered 5xx or 429 in the window",
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
        self.promql.replace("$window", &window.text).replace("$step", &window.step())
    }
}

/// A PromQL range (`10m`, `1h30m`, `90s`): a positive Prometheus duration, its units from the
/// largest down, each once — digits and units only, so it cannot change a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    text: String,
    ms: u64,
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        let refused = || format!("a window is a Prometheus duration such as 10m or 1h30m, not {text:?}");
        // From the largest down: a window names each at most once, in this order.
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let (mut rest, mut ms, mut next) = (text, 0u64, 0);
        while !rest.is_empty() {
            let after = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let number: u64 = rest[..rest.len() - after.len()].parse().map_err(|_| refused())?;
            // The longest unit that matches (`ms`, not `m`).
            let (index, (unit, size)) = UNITS
                .iter()
                .enumerate()
                .filter(|(_, (u, _))| after.starts_with(u))
                .max_by_key(|(_, (u, _))| u.len())
                .ok_or_else(refused)?;
            if index < next {
                return Err(refused());
            }
            next = index + 1;
            ms = number.checked_mul(*size).and_then(|n| ms.checked_add(n)).ok_or_else(refused)?;
            rest = &after[unit.len()..];
        }
        if ms == 0 {
            return Err(refused());
        }
        Ok(Window { text: text.to_owned(), ms })
    }

    /// A subquery's step: [`SUBQUERY_POINTS`] points across the window (at least 1 ms).
    pub fn step(&self) -> String {
        format!("{}ms", (self.ms / SUBQUERY_POINTS).max(1))
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
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
            let why = |field: &str| body[field].as_str().unwrap_or("?").to_owned();
            bail!("Prometheus refused the query ({}: {})", why("errorType"), why("error"));
        }
        let series = body["data"]["result"].as_array().cloned().unwrap_or_default();
        if series.len() > 1 {
            bail!("the query returned {} series, not one", series.len());
        }
        let value = series.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
        Ok(value.filter(|v| v.is_finite()))
    }
}

/// The least share of its scrapes that any instance answered over the window (an instance that
/// exposed fsync's metrics in it): below 1, an instance was down or unreachable for a while, and
/// what its clients met is in no figure. `None`: no instance was scraped.
pub async fn scrapes_answered(prometheus: &Prometheus, window: &Window) -> anyhow::Result<Option<f64>> {
    let query = scrapes_query(window);
    prometheus.value(&query).await.with_context(|| format!("the instances' scrapes: {query}"))
}

/// The PromQL of [`scrapes_answered`].
pub fn scrapes_query(window: &Window) -> String {
    let w = &window.text;
    format!("min(avg_over_time(up[{w}]) and on (job, instance) last_over_time(fsync_websocket_connections[{w}]))")
}

/// The live gate's own figure: the least share of scrapes an instance answered.
pub const SCRAPES_ANSWERED: &str = "scrapes_answered_fraction";

/// The live gate's own gate: every instance answered every scrape of the window.
pub fn scrapes_verdict(answered: Option<f64>) -> Verdict {
    Verdict {
        kpi: SCRAPES_ANSWERED.to_owned(),
        kind: "gate",
        text: "≥ 1 (live only)".to_owned(),
        threshold: Some(1.0),
        met: answered.map(|a| a >= 1.0),
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
        for (ok, ms) in
            [("10m", 600_000), ("1h30m", 5_400_000), ("90s", 90_000), ("500ms", 500), ("1m30s500ms", 90_500)]
        {
            let window = Window::parse(ok).unwrap();
            assert_eq!((window.to_string(), window.ms), (ok.to_owned(), ms));
        }
        for bad in [
            "",
            "10",
            "m",
            "10 m",
            "10m]",
            "5m) or vector(1",
            "1x",
            "10mss",
            "1m1h",
            "5m5m",
            "0s",
            "99999999999999999999s",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Window::parse("10m").unwrap().step(), "2500ms", "240 points across the window");
    }

    #[test]
    fn queries_name_their_window_and_the_write_calls() {
        let window = Window::parse("10m").unwrap();
        for figure in FIGURES {
            let query = figure.query(&window);
            assert!(query.contains("[10m") && !query.contains('$'), "{query}");
        }
        let applied = LiveFigure::named("delta_applied_fraction").unwrap().query(&window);
        assert!(applied.contains("[10m:2500ms]"), "{applied}");
        assert!(LiveFigure::named("start_large_warm_p50_ms").is_none(), "no live reading by size");
    }
}

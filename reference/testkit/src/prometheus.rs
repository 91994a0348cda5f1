//! A real Prometheus (Debian's `prometheus`) for the tests: started on a loopback port with a
//! generated configuration, its data in a temporary directory, stopped when dropped. A machine
//! without it skips those tests and says why, unless `FSYNC_REQUIRE_PROMETHEUS=1` (CI sets it,
//! after installing the package) makes that a failure.

use anyhow::Context;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// One scrape job: a name, its targets (`host:port`) and the Bearer token it sends.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub targets: Vec<String>,
    pub bearer: String,
}

/// A running Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// Whether the tests can run Prometheus here: `None` (after saying why) when they cannot and
/// `FSYNC_REQUIRE_PROMETHEUS` is unset; with it set, a missing binary panics.
pub fn available(what: &str) -> Option<()> {
    let found = std::process::Command::new("prometheus").arg("--version").output();
    match found {
        Ok(out) if out.status.success() => Some(()),
        _ if std::env::var_os("FSYNC_REQUIRE_PROMETHEUS").is_some_and(|v| v == "1") => {
            panic!("{what}: FSYNC_REQUIRE_PROMETHEUS=1, but there is no `prometheus` (apt-get install prometheus)")
        }
        _ => {
            eprintln!("skipped {what}: no `prometheus` here (apt-get install prometheus; FSYNC_REQUIRE_PROMETHEUS=1 fails instead)");
            None
        }
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every `every`, evaluating the rule files `rules` as
    /// often, and waits until it is ready.
    pub async fn start(jobs: &[Job], every: Duration, rules: &[&Path]) -> anyhow::Result<Prometheus> {
        let dir = tempfile::tempdir().context("a directory for Prometheus")?;
        let config = dir.path().join("prometheus.yml");
        let rules: Vec<String> = rules
            .iter()
            .map(|r| std::path::absolute(r).unwrap_or(r.to_path_buf()))
            .map(|r| r.display().to_string())
            .collect();
        std::fs::write(&config, config_text(jobs, every, &rules)).context("write prometheus.yml")?;
        let port = free_port()?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).context("its log")?)
            .kill_on_drop(true)
            .spawn()
            .context("start prometheus")?;
        let prometheus = Prometheus { url: format!("http://127.0.0.1:{port}"), child, _dir: dir };
        let deadline = crate::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/-/ready", prometheus.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(prometheus);
            }
            anyhow::ensure!(crate::now() < deadline, "Prometheus was not ready on {} within 30 s", prometheus.url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The result of an instant PromQL query (`data.result`).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/api/v1/query?query={}", self.url, fsync_client::transport::encode(promql));
        let answer = reqwest::get(url).await.context("query Prometheus")?;
        let body: Value = answer.json().await.context("Prometheus's answer")?;
        anyhow::ensure!(body["status"] == "success", "the query {promql} failed: {body}");
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `promql` returns a series whose value `holds`; that series.
    pub async fn until(&self, promql: &str, holds: impl Fn(f64) -> bool, within: Duration) -> anyhow::Result<Value> {
        let deadline = crate::now() + within;
        loop {
            let series = self.query(promql).await?;
            let value = |s: &Value| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if let Some(found) = series.iter().find(|s| value(s).is_some_and(&holds)) {
                return Ok(found.clone());
            }
            anyhow::ensure!(crate::now() < deadline, "{promql} never held within {within:?}: {series:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `promql` returns no series (an alert no longer firing).
    pub async fn until_empty(&self, promql: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = crate::now() + within;
        loop {
            let series = self.query(promql).await?;
            if series.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(crate::now() < deadline, "{promql} still returned {series:?} after {within:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A loopback port free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `prometheus.yml` for `jobs` (JSON is YAML: no escaping of our own).
fn config_text(jobs: &[Job], every: Duration, rules: &[String]) -> String {
    let interval = format!("{}ms", every.as_millis());
    let scrape_configs: Vec<Value> = jobs
        .iter()
        .map(|job| {
            serde_json::json!({
                "job_name": job.name,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials": job.bearer},
                "static_configs": [{"targets": job.targets}],
            })
        })
        .collect();
    let global =
        serde_json::json!({"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval});
    serde_json::json!({"global": global, "rule_files": rules, "scrape_configs": scrape_configs}).to_string()
}

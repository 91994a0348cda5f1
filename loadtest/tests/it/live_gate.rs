//! Rollout gates on live metrics (DESIGN §11, §12): a real Prometheus scrapes both instances of a
//! local stack with the service-role key while edits flow to real agents. Every recording rule of
//! `ops/prometheus/rules.yml` returns series, every panel of the Grafana dashboard returns data,
//! and `gate --prometheus` passes; agents paused with SIGSTOP make `FsyncPreviewsBehind` fire
//! and the live gate fail, and once they resume their backlog's lag makes `FsyncAppliedLagHigh`
//! fire; both end when the agents have caught up. The rules run with their windows and `for`s
//! scaled down (5 m → 10 s), as a test cannot wait minutes. The Argo Rollouts template holds the
//! same queries and limits as the live gate.

use fsync_fixtures::Size;
use fsync_loadtest::budgets::Budgets;
use fsync_loadtest::live::{self, LiveFigure, Window};
use fsync_loadtest::local::Local;
use fsync_loadtest::measure::start::start_one;
use fsync_loadtest::seed;
use fsync_testkit::prometheus::{self, Job, Prometheus};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// A rule's rate window is this many times shorter here.
const WINDOWS_SHORTER: u64 = 30;
/// An alert's `for` is this many times shorter here.
const FOR_SHORTER: u64 = 100;
/// How long the agents stay paused: longer than the scaled rate window, so that their backlog
/// outweighs what they applied before.
const PAUSED_FOR: Duration = Duration::from_secs(12);
const WITHIN: Duration = Duration::from_secs(45);
/// The live gate's window: the whole run (the session starts at its beginning count in it).
const GATE_WINDOW: &str = "5m";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn agent() -> (PathBuf, Vec<String>) {
    (PathBuf::from(env!("CARGO_BIN_EXE_fsync-loadtest")), vec!["agent".to_owned()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_on_two_live_instances_the_alerts_and_the_live_gate_follow_paused_agents() {
    if prometheus::available("the live gate against a real Prometheus").is_none() {
        return;
    }
    let work = std::env::temp_dir();
    let stack = Local::start(agent(), None, "fsync_kpi_live_test", &work).await.expect("the stack starts");
    let outcome = exercise(&stack).await;
    stack.stop().await.expect("the stack stops");
    outcome.expect("the live gate's run");
}

async fn exercise(stack: &Local) -> anyhow::Result<()> {
    let rules_dir = tempfile::tempdir()?;
    let rules = rules_dir.path().join("rules.yml");
    std::fs::write(&rules, scaled(&std::fs::read_to_string(root().join("ops/prometheus/rules.yml"))?))?;
    let targets = [&stack.fast.url, &stack.legacy.url].map(|url| url.trim_start_matches("http://").to_owned());
    let job = Job { name: "fsync".into(), targets: targets.to_vec(), bearer: stack.service_key.clone() };
    let prometheus = Prometheus::start(&[job], SCRAPE_EVERY, &[&rules]).await?;
    // Scraped before anything happens: a rate counts what came after a series' first sample.
    prometheus.until(r#"count(up{job="fsync"} == 1)"#, |up| up == 2.0, WITHIN).await?;

    // Two previews on each instance, and edits through both.
    let owner = seed::owner(
        &stack.fast.api,
        &stack.service_key,
        &stack.secret,
        fsync_store::Ids::uuid(&fsync_store::SystemIds),
    )
    .await?;
    let project = seed::project(&stack.fast.api, &owner, "live gate", Some((Size::Small, 3))).await?;
    let mut agents = Vec::new();
    for api in [&stack.fast.api, &stack.legacy.api, &stack.fast.api, &stack.legacy.api] {
        let (_, view) = start_one(api, &owner.token, project).await?;
        agents.push(view.agent_pid.ok_or_else(|| anyhow::anyhow!("a running session has an agent pid"))?);
    }
    let editing = Arc::new(AtomicBool::new(true));
    let edits = {
        let apis = [stack.fast.api.clone(), stack.legacy.api.clone()];
        let (token, editing) = (owner.token.clone(), editing.clone());
        tokio::spawn(async move {
            // Up to 20 edits a second, for at most five minutes; refused ones (429) are counted.
            let mut refused = 0;
            for i in 0..6000usize {
                if !editing.load(Ordering::Relaxed) {
                    break;
                }
                let args = serde_json::json!({"project_uuid": project, "p_file_path": "src/live.ts",
                    "p_content": format!("export const edit = {i};\n"), "p_file_type": "typescript"});
                let reply = apis[i % 2].rpc(Some(&token), "upsert_project_file", args).await?;
                match reply.status {
                    200 => {}
                    429 => refused += 1,
                    status => anyhow::bail!("edit {i}: HTTP {status} {}", reply.body),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(refused)
        })
    };
    let checked = under_load(&prometheus, &agents).await;
    let refusing = match checked {
        Ok(()) => refused_edits_fail_the_gate(stack, &prometheus).await,
        Err(e) => Err(e),
    };
    editing.store(false, Ordering::Relaxed);
    for pid in &agents {
        signal("CONT", *pid);
    }
    let refused = edits.await??;
    prometheus.stop().await;
    refusing?;
    anyhow::ensure!(refused > 0, "the write limit refused edits");
    Ok(())
}

/// With the write rate limit back (one edit now and then), edits are refused: the live gate fails
/// on `delta_failed_edits`, however fast the edits that landed were applied.
async fn refused_edits_fail_the_gate(stack: &Local, prometheus: &Prometheus) -> anyhow::Result<()> {
    let limit = "INSERT INTO fsync.rate_limits (name, burst, per_second) VALUES ('writes', 1, 0.001)";
    fsync_loadtest::local::connect(&stack.database_url).await?.execute(limit, &[]).await?;
    prometheus
        .until(r#"sum(increase(fsync_write_failures_total{reason="throttled"}[1m]))"#, |n| n > 0.0, WITHIN)
        .await?;
    let (passed, said) = gate(&prometheus.url, GATE_WINDOW);
    anyhow::ensure!(!passed && said.contains("gate missed: delta_failed_edits"), "refused edits fail it:\n{said}");
    Ok(())
}

async fn under_load(prometheus: &Prometheus, agents: &[u32]) -> anyhow::Result<()> {
    // Every recorded figure and every panel has a value while sessions start and edits flow (the
    // starts count for a scaled window, 10 s, after them).
    for record in recorded_names(&std::fs::read_to_string(root().join("ops/prometheus/rules.yml"))?) {
        prometheus.until(&record, f64::is_finite, WITHIN).await?;
    }
    for query in dashboard_queries()? {
        prometheus.until(&query, f64::is_finite, WITHIN).await?;
    }
    prometheus.until(r#"fsync:sessions{status="running"}"#, |n| n == 4.0, WITHIN).await?;
    let (passed, said) = gate(&prometheus.url, GATE_WINDOW);
    anyhow::ensure!(passed, "the live gate passes while every preview follows:\n{said}");
    argo_template_matches_the_live_gate(prometheus).await?;

    for pid in agents {
        signal("STOP", *pid);
    }
    let paused = fsync_testkit::now();
    let behind = r#"ALERTS{alertname="FsyncPreviewsBehind",alertstate="firing"}"#;
    prometheus.until(behind, |_| true, WITHIN).await?;
    prometheus.until(r#"fsync:sessions{status="behind"}"#, |n| n == 4.0, WITHIN).await?;
    let (passed, said) = gate(&prometheus.url, GATE_WINDOW);
    anyhow::ensure!(!passed, "the live gate fails while previews are behind:\n{said}");
    anyhow::ensure!(said.contains("gate missed: delta_applied_fraction"), "{said}");
    tokio::time::sleep((paused + PAUSED_FOR).saturating_duration_since(fsync_testkit::now())).await;
    for pid in agents {
        signal("CONT", *pid);
    }
    let slow = r#"ALERTS{alertname="FsyncAppliedLagHigh",alertstate="firing"}"#;
    prometheus.until(slow, |_| true, WITHIN).await?;
    prometheus.until_empty(behind, WITHIN).await?;
    prometheus.until_empty(slow, WITHIN).await?;
    Ok(())
}

/// Runs `fsync-loadtest gate --prometheus URL --window W`: whether it passed, and what it said.
fn gate(url: &str, window: &str) -> (bool, String) {
    let budgets = root().join("ci/kpi-budgets.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fsync-loadtest"))
        .args(["gate", "--prometheus", url, "--window", window, "--budgets"])
        .arg(&budgets)
        .output()
        .expect("run the gate");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ fsync-loadtest gate --prometheus {url} --window {window}\n{said}");
    assert!(matches!(out.status.code(), Some(0 | 1)), "the gate ran to a verdict:\n{said}");
    (out.status.success(), said)
}

/// `ops/argo/analysis-template.yaml` gates on what `gate --prometheus` gates on: a metric for each
/// gate of the budgets, the live gate's query and limit, and each query answers here.
async fn argo_template_matches_the_live_gate(prometheus: &Prometheus) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(root().join("ops/argo/analysis-template.yaml"))?;
    let template: Value = serde_yaml_ng::from_str(&text)?;
    anyhow::ensure!(template["kind"] == "AnalysisTemplate", "{template}");
    let budgets = Budgets::read(&root().join("ci/kpi-budgets.toml"))?;
    let metrics = template["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    let named: Vec<String> = metrics.iter().map(|m| m["name"].as_str().unwrap_or("").replace('-', "_")).collect();
    let mut sorted = named.clone();
    sorted.sort();
    let mut gates: Vec<String> = budgets.gate.keys().cloned().collect();
    gates.push(live::SCRAPES_ANSWERED.to_owned());
    gates.sort();
    anyhow::ensure!(sorted == gates, "the template's metrics {named:?}, the gates {gates:?}");
    let window = Window::parse(GATE_WINDOW).map_err(anyhow::Error::msg)?;
    for (metric, kpi) in metrics.iter().zip(&named) {
        let query = metric["provider"]["prometheus"]["query"].as_str().unwrap_or("").trim();
        let query = query.replace("{{args.window}}", &window.to_string()).replace("{{args.step}}", &window.step());
        let (expected, limit) = match LiveFigure::named(kpi) {
            Some(live) => (live.query(&window), budgets.gate[kpi].clone()),
            None if kpi == live::SCRAPES_ANSWERED => (live::scrapes_query(&window), at_least_one()),
            None => anyhow::bail!("{kpi} has no live reading"),
        };
        anyhow::ensure!(query == expected, "{kpi}: the template's\n{query}\nthe gate's\n{expected}");
        let condition = metric["successCondition"].as_str().unwrap_or("");
        let threshold = match (limit.max, limit.min) {
            (Some(max), _) => format!("result[0] <= {max}"),
            (_, Some(min)) => format!("result[0] >= {min}"),
            _ => anyhow::bail!("{kpi}: a gate is a max or a min"),
        };
        let guarded = format!("len(result) > 0 && !isNaN(result[0]) && {threshold}");
        anyhow::ensure!(condition == guarded, "{kpi}: {condition:?}, not {guarded:?}");
        anyhow::ensure!(metric["count"] == 1, "{kpi} is measured once, as a step");
        prometheus.until(&query, f64::is_finite, WITHIN).await?;
    }
    Ok(())
}

/// The live-only gate's limit.
fn at_least_one() -> fsync_loadtest::budgets::Limit {
    fsync_loadtest::budgets::Limit { max: None, min: Some(1.0), max_ratio: None, of: None }
}

/// Every `expr` of the dashboard's panels, `$__rate_interval` made the scaled rate window.
fn dashboard_queries() -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(root().join("ops/grafana/fsync-dashboard.json"))?;
    let dashboard: Value = serde_json::from_str(&text)?;
    let window = format!("{}ms", 5 * 60 * 1000 / WINDOWS_SHORTER);
    anyhow::ensure!(dashboard["uid"].is_string() && dashboard["schemaVersion"].is_u64(), "an importable dashboard");
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(!panels.is_empty(), "the dashboard has panels");
    let ids: std::collections::BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    anyhow::ensure!(ids.len() == panels.len(), "every panel has an id of its own");
    // A figure a rollout is gated on live is named on the dashboard as the KPI report names it.
    let descriptions: Vec<&str> = panels.iter().filter_map(|p| p["description"].as_str()).collect();
    for figure in fsync_loadtest::live::FIGURES {
        anyhow::ensure!(descriptions.iter().any(|d| d.contains(figure.kpi)), "a panel shows {}", figure.kpi);
    }
    let mut queries = Vec::new();
    for panel in &panels {
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(!targets.is_empty(), "panel {} queries something", panel["title"]);
        anyhow::ensure!(
            panel["gridPos"]["w"].is_u64() && panel["type"].is_string(),
            "panel {} is placed",
            panel["title"]
        );
        for target in targets {
            let expr = target["expr"].as_str().ok_or_else(|| anyhow::anyhow!("a target's expr: {target}"))?;
            queries.push(expr.replace("$__rate_interval", &window));
        }
    }
    Ok(queries)
}

/// The names of the recording rules in `rules`.
fn recorded_names(rules: &str) -> Vec<String> {
    rules.lines().filter_map(|l| l.trim().strip_prefix("- record: ")).map(str::to_owned).collect()
}

/// `rules` with every range (`[5m]`) [`WINDOWS_SHORTER`] times and every `for:`
/// [`FOR_SHORTER`] times shorter, in milliseconds.
fn scaled(rules: &str) -> String {
    let minutes_ms = |text: &str| text.strip_suffix('m').and_then(|n| n.parse::<u64>().ok()).map(|n| n * 60_000);
    rules
        .lines()
        .map(|line| {
            if let Some((head, duration)) = line.split_once("for: ") {
                let ms = minutes_ms(duration.trim()).expect("a `for` in minutes");
                return format!("{head}for: {}ms", ms / FOR_SHORTER);
            }
            let mut out = String::new();
            let mut rest = line;
            while let Some(open) = rest.find('[') {
                let close = rest[open..].find(']').map(|c| open + c).expect("a closed range");
                let ms = minutes_ms(&rest[open + 1..close]).expect("a range in minutes");
                out.push_str(&rest[..open]);
                out.push_str(&format!("[{}ms]", ms / WINDOWS_SHORTER));
                rest = &rest[close + 1..];
            }
            out.push_str(rest);
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn signal(which: &str, pid: u32) {
    let status = std::process::Command::new("kill").arg(format!("-{which}")).arg(pid.to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{which} {pid}");
}

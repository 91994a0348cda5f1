//! Session request → agent `running`: sessions started one after another on a project, each
//! timed from the request to the first poll that sees `running`, then stopped. The sessions'
//! own `timings_ms` give the phases; the agent's peak RSS is read while it runs.

use crate::clock::{self, now};
use crate::progress::Progress;
use crate::stats::percentile;
use anyhow::{bail, Context};
use fsync_client::Api;
use fsync_protocol::snapshot::{SessionStatus, SessionView};
use fsync_store::SystemClock;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// How long one session may take to start.
const START_WITHIN: Duration = Duration::from_secs(300);

/// What starting `n` sessions measured.
#[derive(Debug, Default)]
pub struct Starts {
    pub samples_ms: Vec<f64>,
    /// The median of each phase the sessions reported.
    pub phases_ms: BTreeMap<String, f64>,
    /// The highest agent peak RSS seen, in KiB.
    pub peak_rss_kib: u64,
}

/// Starts a session of `project` through `api` as `token`, waits for `running` and stops it;
/// `before` runs ahead of each start (e.g. a write, so that each needs a new snapshot).
pub async fn starts<F, Fut>(
    api: &Api,
    token: &str,
    project: Uuid,
    n: usize,
    progress: &Progress,
    mut before: F,
) -> anyhow::Result<Starts>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut starts = Starts::default();
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for i in 0..n {
        before(i).await?;
        let (elapsed_ms, view) = start_one(api, token, project).await?;
        starts.samples_ms.push(elapsed_ms);
        for (phase, ms) in &view.timings_ms {
            phases.entry(phase.clone()).or_default().push(*ms);
        }
        if let Some(pid) = view.agent_pid {
            starts.peak_rss_kib = starts.peak_rss_kib.max(peak_rss_kib(pid));
        }
        let stopped = api.stop_session(token, view.id).await.context("stop the session")?;
        if !stopped.is_success() {
            bail!("stop session {}: HTTP {} {}", view.id, stopped.status, stopped.body);
        }
        progress.inc(1);
    }
    starts.phases_ms =
        phases.into_iter().filter_map(|(phase, samples)| Some((phase, percentile(&samples, 50.0)?))).collect();
    Ok(starts)
}

/// One session from request to `running`: the time it took and its view.
pub async fn start_one(api: &Api, token: &str, project: Uuid) -> anyhow::Result<(f64, SessionView)> {
    let started = now();
    let created = api.create_session(token, project).await.context("create a session")?;
    let Some(id) = created.uuid("id") else { bail!("create a session: HTTP {} {}", created.status, created.body) };
    let view = running(api, token, id).await?;
    Ok((clock::ms_since(started), view))
}

/// Polls session `id` every millisecond until it runs; a session that ends instead is an error.
pub async fn running(api: &Api, token: &str, id: Uuid) -> anyhow::Result<SessionView> {
    let poll = Duration::from_millis(1);
    let view = api
        .wait_session_every(token, id, SessionStatus::Running, START_WITHIN, &SystemClock, poll)
        .await
        .map_err(|e| anyhow::anyhow!("session {id}: {e}"))?;
    if view.status != SessionStatus::Running {
        bail!("session {id} {}: {}", view.status.as_str(), view.reason.unwrap_or_default());
    }
    Ok(view)
}

/// A process's peak resident set (`VmHWM`), in KiB; 0 when it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

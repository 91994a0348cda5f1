//! Sustained upserts: the offered rate is stepped up (open loop, writes spread over several
//! projects, since one project takes one writer at a time), and each step records what was
//! achieved and its latencies, to find the knee: the last rate the server keeps up with.

use crate::clock::{self, now};
use crate::measure::pace;
use crate::progress::Progress;
use crate::report::ThroughputStep;
use crate::stats::percentile;
use fsync_client::Api;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Requests in flight at most (beyond it the generator falls behind, which lowers `achieved`).
const IN_FLIGHT: usize = 512;

/// Steps through `rates` (upserts per second), each for `step`.
pub async fn steps(
    api: &Api,
    token: &str,
    projects: &[Uuid],
    rates: &[u32],
    step: Duration,
    progress: &Progress,
) -> Vec<ThroughputStep> {
    let mut steps = Vec::with_capacity(rates.len());
    for (n, &rate) in rates.iter().enumerate() {
        steps.push(one_step(api, token, projects, rate, step, n).await);
        progress.inc(1);
    }
    steps
}

async fn one_step(api: &Api, token: &str, projects: &[Uuid], rate: u32, step: Duration, n: usize) -> ThroughputStep {
    let writes = (f64::from(rate) * step.as_secs_f64()).round() as usize;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(writes)));
    let errors = Arc::new(Mutex::new(0u64));
    let start = now();
    pace::open_loop(rate, writes, IN_FLIGHT, |i| {
        let (api, token, latencies, errors) = (api.clone(), token.to_owned(), latencies.clone(), errors.clone());
        let project = projects[i % projects.len()];
        async move {
            let path = format!("load/s{n}/f{}.ts", i % 64);
            let args = json!({"project_uuid": project, "p_file_path": path, "p_content": format!("// step {n} write {i}"), "p_file_type": "typescript"});
            let sent = now();
            match api.rpc(Some(&token), "upsert_project_file", args).await {
                Ok(reply) if reply.is_success() => latencies.lock().unwrap_or_else(|e| e.into_inner()).push(clock::ms_since(sent)),
                _ => *errors.lock().unwrap_or_else(|e| e.into_inner()) += 1,
            }
        }
    })
    .await;
    let elapsed_s = now().saturating_duration_since(start).as_secs_f64();
    let latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let errors = *errors.lock().unwrap_or_else(|e| e.into_inner());
    ThroughputStep {
        offered_per_s: f64::from(rate),
        achieved_per_s: latencies.len() as f64 / elapsed_s.max(f64::EPSILON),
        p50_ms: percentile(&latencies, 50.0).unwrap_or(f64::NAN),
        p99_ms: percentile(&latencies, 99.0).unwrap_or(f64::NAN),
        errors,
    }
}

/// The knee: the highest achieved rate among steps whose p99 stays within `p99_ms` (else the
/// best step), and that step's p99.
pub fn knee(steps: &[ThroughputStep], p99_ms: f64) -> Option<(f64, f64)> {
    let within =
        steps.iter().filter(|s| s.p99_ms <= p99_ms).max_by(|a, b| a.achieved_per_s.total_cmp(&b.achieved_per_s));
    let best = within.or_else(|| steps.iter().max_by(|a, b| a.achieved_per_s.total_cmp(&b.achieved_per_s)))?;
    Some((best.achieved_per_s, best.p99_ms))
}

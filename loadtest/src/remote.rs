//! A KPI run against a deployment this machine does not run (a staging project, `--api`): only
//! what a client sees — session request → `running` on the small fixture and stepped upserts —
//! with the deployment's keys. Server-side floors and the agents' disks are not reachable from
//! here; the report says so.

use crate::measure::{start, throughput};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::report::{Mode, Report, Series, VERSION};
use crate::seed;
use crate::stats::percentile;
use fsync_client::{Api, Transport};
use fsync_fixtures::Size;
use std::collections::BTreeMap;

/// A deployment's API URL and keys.
pub struct Deployment {
    pub url: String,
    pub anon_key: String,
    pub service_key: String,
}

pub async fn run(plan: &Plan, deployment: &Deployment) -> anyhow::Result<Report> {
    let api = Api::new(&deployment.url, &deployment.anon_key, Transport::tcp());
    let owner_id = fsync_store::Ids::uuid(&fsync_store::SystemIds);
    // Without the deployment's JWT secret no user token can be minted here: the service key
    // creates the profile and acts for the owner.
    seed::profile(&api, &deployment.service_key, owner_id).await?;
    let owner = seed::Owner { id: owner_id, token: deployment.service_key.clone() };
    let small = seed::project(&api, &owner, "kpi small", Some((Size::Small, 1))).await?;
    let progress = Progress::new("start small", plan.small_sessions as u64);
    let starts = start::starts(&api, &owner.token, small, plan.small_sessions, &progress, |_| async { Ok(()) }).await?;
    progress.finish(&format!("p50 {:.1} ms", percentile(&starts.samples_ms, 50.0).unwrap_or(f64::NAN)));
    let mut projects = Vec::new();
    for n in 0..plan.projects {
        projects.push(seed::project(&api, &owner, &format!("kpi upserts {n}"), None).await?);
    }
    let progress = Progress::new("upserts, stepped", plan.rates.len() as u64);
    let steps = throughput::steps(&api, &owner.token, &projects, &plan.rates, plan.step_for, &progress).await;
    let knee = throughput::knee(&steps, 50.0);
    progress.finish(&format!("{:?}", knee));
    let mut kpis = BTreeMap::new();
    for p in [50, 95, 99] {
        if let Some(v) = percentile(&starts.samples_ms, f64::from(p)) {
            kpis.insert(format!("start_small_p{p}_ms"), v);
        }
    }
    if let Some((rate, p99)) = knee {
        kpis.insert("upserts_per_s".into(), rate);
        kpis.insert("upserts_p99_ms".into(), p99);
    }
    let series = Series {
        start_ms: BTreeMap::from([("small".into(), starts.samples_ms)]),
        start_phases_ms: BTreeMap::from([("small".into(), starts.phases_ms)]),
        throughput: steps,
        ..Series::default()
    };
    Ok(Report {
        version: VERSION,
        mode: Mode::Remote,
        quick: plan.quick,
        machine: crate::machine::describe(None),
        parameters: plan.parameters(),
        kpis,
        floors: BTreeMap::new(),
        series,
        notes: vec![
            format!(
                "remote run against {}: server-side floors (LISTEN, unzip, copy, spawn) are left out",
                deployment.url
            ),
            "edit → applied needs an agent whose disk this machine sees: left out of a remote run".into(),
        ],
    })
}

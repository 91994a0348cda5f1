//! A KPI run against a deployment this machine does not run (a staging project, `--api`): what
//! a client sees, with the deployment's keys. With its JWT secret (`--jwt-secret`) the run acts
//! as a member it mints a token for: session request → `running` on the small fixture (agents in
//! the deployment's containers), edits → applied by agents running here (see [`crate::fleet`]),
//! and stepped upserts. Without it only the upserts are measured (as the service role): sessions
//! need a member's token and the agents a container token. Server-side floors are not reachable
//! from here; the report says what it leaves out.

use crate::figures::Figures;
use crate::fleet::{Fleet, Target};
use crate::measure::start;
use crate::plan::{Phase, Plan};
use crate::progress::Progress;
use crate::report::{Mode, Report, VERSION};
use crate::run;
use crate::seed::{self, Owner};
use crate::stats::percentile;
use fsync_client::{Api, Transport};
use fsync_fixtures::Size;
use fsync_protocol::jwt::Secret;
use std::path::{Path, PathBuf};

/// A deployment's API URL and keys, and its JWT secret when the operator gives it.
pub struct Deployment {
    pub url: String,
    pub anon_key: String,
    pub service_key: String,
    pub jwt_secret: Option<String>,
}

/// Runs the client-side part of `plan` against `deployment`; local agents are `agent`, their
/// directories under `work_dir`.
pub async fn run(
    plan: &Plan,
    deployment: &Deployment,
    agent: &(PathBuf, Vec<String>),
    work_dir: &Path,
) -> anyhow::Result<Report> {
    let api = Api::new(&deployment.url, &deployment.anon_key, Transport::tcp());
    let owner_id = fsync_store::Ids::uuid(&fsync_store::SystemIds);
    let secret = deployment.jwt_secret.as_deref().map(Secret::new);
    let owner = match &secret {
        Some(secret) => seed::owner(&api, &deployment.service_key, secret, owner_id).await?,
        None => {
            seed::profile(&api, &deployment.service_key, owner_id).await?;
            Owner { id: owner_id, token: deployment.service_key.clone() }
        }
    };
    let mut figures = Figures::default();
    figures.notes.push(format!(
        "remote run against {}: server-side floors (LISTEN, unzip, copy, spawn) are left out",
        deployment.url
    ));
    match &secret {
        Some(secret) => {
            if plan.phases.contains(&Phase::Delta) {
                let work = tempfile::Builder::new().prefix("fsync-kpi-remote-").tempdir_in(work_dir)?;
                deltas(plan, &api, deployment, secret, agent, &owner, work.path(), &mut figures).await?;
            }
            if plan.phases.contains(&Phase::Starts) {
                starts(plan, &api, &owner, &mut figures).await?;
            }
        }
        None => figures.notes.push(
            "without --jwt-secret no member token or container token can be minted here: session starts and \
             edits → applied are left out, upserts run as the service role"
                .into(),
        ),
    }
    if plan.phases.contains(&Phase::Upserts) {
        run::upserts(plan, &api, &owner, &mut figures).await?;
    }
    Ok(Report {
        version: VERSION,
        mode: Mode::Remote,
        quick: plan.quick,
        machine: crate::machine::describe(None),
        parameters: plan.parameters(),
        kpis: figures.kpis,
        floors: figures.floors,
        series: figures.series,
        notes: figures.notes,
        metrics_scrape: figures.scrape,
    })
}

async fn starts(plan: &Plan, api: &Api, owner: &Owner, figures: &mut Figures) -> anyhow::Result<()> {
    let small = seed::project(api, owner, "kpi small", Some((Size::Small, 1))).await?;
    let progress = Progress::new("start small", plan.small_sessions as u64);
    let starts = start::starts(api, &owner.token, small, plan.small_sessions, &progress, |_| async { Ok(()) }).await?;
    progress.finish(&format!("p50 {:.1} ms", percentile(&starts.samples_ms, 50.0).unwrap_or(f64::NAN)));
    figures.starts("small", starts);
    Ok(())
}

/// Edits to agents running here, following a project of the deployment.
#[allow(clippy::too_many_arguments)]
async fn deltas(
    plan: &Plan,
    api: &Api,
    deployment: &Deployment,
    secret: &Secret,
    agent: &(PathBuf, Vec<String>),
    owner: &Owner,
    work: &Path,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let project = seed::edited_project(api, owner).await?;
    let progress = Progress::new("start the agents here", plan.agents as u64);
    let target = Target { api_url: &deployment.url, secret, project };
    let fleet = Fleet::start(agent, &target, plan.agents, work, &progress).await?;
    progress.finish(&format!("{} agents here following one project", fleet.dirs.len()));
    let deltas = run::edits(plan, api, owner, project, &fleet.dirs).await;
    run::scrape_into(api, &deployment.service_key, figures).await;
    fleet.stop().await;
    figures.deltas(deltas?);
    figures.notes.push(format!(
        "edits → applied: {} agents on this machine (container tokens minted with the JWT secret, \
         hydrated file by file through the API), the deployment's realtime delivering to them",
        plan.agents
    ));
    Ok(())
}

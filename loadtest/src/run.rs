//! A local KPI run, phase after phase (those the plan names, in [`Phase`] order): the stack
//! starts, then edits to a fleet of agents, session starts (small, large warm and cold, legacy)
//! with the `unzip` and copy floors (and, with a preview image, the same starts with the Docker
//! launcher beside a container that exits at once), delivery beside the `LISTEN` floor and
//! fan-out, and stepped upserts; the spawn floor ends every run. The figures and their samples become the report.

use crate::figures::Figures;
use crate::local::Local;
use crate::measure::{delta, floors, realtime, start, stop, throughput};
use crate::plan::{Phase, Plan};
use crate::progress::Progress;
use crate::report::{Mode, Report, VERSION};
use crate::seed::{self, Owner};
use crate::stats::percentile;
use anyhow::{bail, Context};
use fsync_fixtures::Size;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Runs `plan` on a stack started here, in a fresh `database`, with the run's files under
/// `work_dir`; agents are `agent` (a program and its leading args).
pub async fn local(
    plan: &Plan,
    agent: (PathBuf, Vec<String>),
    database: &str,
    work_dir: &Path,
) -> anyhow::Result<Report> {
    let stack = Local::start(agent.clone(), plan.container_image.as_deref(), database, work_dir).await?;
    let outcome = measure(plan, &stack, &agent).await;
    let postgres = stack.postgres_version().await.ok();
    stack.stop().await?;
    let mut figures = outcome?;
    figures.notes.push(format!("agents: {}", agent_description(&agent)));
    if let Some(image) = &plan.container_image {
        figures.notes.push(format!(
            "container starts: agents as containers of {image} (the Docker launcher, host network); \
             floor_container_ms is a container of that image whose command exits at once, created → exited"
        ));
    }
    let filesystem = crate::machine::filesystem_of(work_dir);
    figures.notes.push(format!(
        "the run's files (storage, the agents' directories, the floors' copies) are under {} ({filesystem}); \
         floor_file_write_ms is one small file staged and renamed into place there",
        work_dir.display()
    ));
    let mut parameters = plan.parameters();
    parameters.insert("work_dir".into(), serde_json::json!(work_dir.display().to_string()));
    parameters.insert("work_dir_filesystem".into(), serde_json::json!(filesystem));
    Ok(Report {
        version: VERSION,
        mode: Mode::Local,
        quick: plan.quick,
        machine: crate::machine::describe(postgres),
        parameters,
        kpis: figures.kpis,
        floors: figures.floors,
        series: figures.series,
        notes: figures.notes,
        metrics_scrape: figures.scrape,
    })
}

fn agent_description(agent: &(PathBuf, Vec<String>)) -> String {
    let described = format!("{} {} (a process per session)", agent.0.display(), agent.1.join(" "));
    if agent.1.is_empty() {
        return described;
    }
    // The load test's own binary carries the agent too, but it is several times larger than
    // `fsync-agent`, and its pages count in the agent's RSS.
    format!(
        "{described}; fsync-agent was not built beside it (`cargo build --release -p fsync-agent`), so \
         agent_hydrate_rss_mib includes this larger binary's pages"
    )
}

async fn measure(plan: &Plan, stack: &Local, agent: &(PathBuf, Vec<String>)) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let api = &stack.fast.api;
    // A fresh owner: the run's database is new each time.
    let owner =
        seed::owner(api, &stack.service_key, &stack.secret, fsync_store::Ids::uuid(&fsync_store::SystemIds)).await?;
    for phase in &plan.phases {
        match phase {
            Phase::Delta => deltas(plan, stack, &owner, &mut figures).await?,
            Phase::Starts => {
                let (small, large) = start_fixtures(plan, stack, &owner).await?;
                starts(plan, stack, &owner, small, large, &mut figures).await?;
                large_floors(stack, large, &mut figures)?;
                if let (Some(containers), Some(image)) = (&stack.containers, &plan.container_image) {
                    container_starts(plan, &containers.api, image, &owner, (small, large), &mut figures).await?;
                }
            }
            Phase::Delivery => delivery(plan, stack, &owner, &mut figures).await?,
            Phase::Upserts => upserts(plan, &stack.fast.api, &owner, &mut figures).await?,
            Phase::Stops => stops(plan, stack, &owner, &mut figures).await?,
        }
    }
    let spawn = floors::spawn_and_round_trip_ms(&agent.0, &agent.1, api).await?;
    figures.put("floor_start_ms", Some(spawn));
    figures.floors.insert("start_small_p50_ms".into(), "floor_start_ms".into());
    // The least an edit can take to land: PostgreSQL's commit → LISTEN, then one file written.
    if let (Some(notify), Some(write)) =
        (figures.kpis.get("floor_notify_p50_ms").copied(), figures.kpis.get("floor_file_write_ms").copied())
    {
        figures.put("floor_delta_ms", Some(notify + write));
        figures.floors.insert("delta_p50_ms".into(), "floor_delta_ms".into());
    }
    Ok(figures)
}

/// Sessions of a tiny project started on the fast instance and stopped through the legacy one:
/// stop → channel closed and stop → agent gone.
async fn stops(plan: &Plan, stack: &Local, owner: &Owner, figures: &mut Figures) -> anyhow::Result<()> {
    let project = seed::project(&stack.fast.api, owner, "kpi stops", Some((Size::Tiny, 1))).await?;
    let anon_key = fsync_reference::config::anon_key(&stack.secret);
    let two = stop::StopStack {
        runs: &stack.fast.api,
        runs_url: &stack.fast.url,
        anon_key: &anon_key,
        other: &stack.legacy.api,
        secret: &stack.secret,
    };
    let progress = Progress::new("stop sessions", plan.stops as u64);
    let stops = stop::stops(&two, &owner.token, project, plan.stops, &progress).await?;
    progress.finish(&format!(
        "channel closed p50 {:.1} ms, agent gone p50 {:.1} ms",
        percentile(&stops.channel_closed_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&stops.agent_gone_ms, 50.0).unwrap_or(f64::NAN)
    ));
    figures.percentiles("stop_channel_closed", &stops.channel_closed_ms);
    figures.percentiles("stop_agent_gone", &stops.agent_gone_ms);
    Ok(())
}

/// The small and the large fixture, loaded for the session starts.
async fn start_fixtures(plan: &Plan, stack: &Local, owner: &Owner) -> anyhow::Result<(Uuid, Uuid)> {
    let api = &stack.fast.api;
    let loading = Progress::new("load fixtures", 2);
    let small = seed::project(api, owner, "kpi small", Some((Size::Small, 1))).await?;
    loading.inc(1);
    let large = seed::project(api, owner, "kpi large", Some((plan.large, 1))).await?;
    loading.finish(&format!("small (seed 1) and {} (seed 1) loaded", plan.large));
    Ok((small, large))
}

async fn starts(
    plan: &Plan,
    stack: &Local,
    owner: &Owner,
    small: Uuid,
    large: Uuid,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let (fast, legacy) = (&stack.fast.api, &stack.legacy.api);
    let n = plan.small_sessions + plan.legacy_small_sessions;
    let progress = Progress::new("start small", n as u64);
    let small_starts =
        start::starts(fast, &owner.token, small, plan.small_sessions, &progress, |_| async { Ok(()) }).await?;
    let legacy_starts =
        start::starts(legacy, &owner.token, small, plan.legacy_small_sessions, &progress, |_| async { Ok(()) }).await?;
    progress.finish(&format!(
        "p50 {:.1} ms, legacy p50 {:.1} ms",
        percentile(&small_starts.samples_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&legacy_starts.samples_ms, 50.0).unwrap_or(f64::NAN)
    ));
    figures.starts("small", small_starts);
    figures.starts("legacy_small", legacy_starts);

    let n = plan.large_cold + plan.large_warm + plan.legacy_large;
    let progress = Progress::new(&format!("start {}", plan.large), n as u64);
    // Cold: a write before each start, so that each builds its snapshot on demand.
    let cold = start::starts(fast, &owner.token, large, plan.large_cold, &progress, |i| {
        seed::touch(fast, owner, large, "kpi/cold.txt", format!("cold start {i}"))
    })
    .await?;
    let warm = start::starts(fast, &owner.token, large, plan.large_warm, &progress, |_| async { Ok(()) }).await?;
    let legacy_large =
        start::starts(legacy, &owner.token, large, plan.legacy_large, &progress, |_| async { Ok(()) }).await?;
    progress.finish(&format!(
        "warm p50 {:.0} ms, cold p50 {:.0} ms, legacy p50 {:.0} ms, agent peak RSS {:.1} MiB",
        percentile(&warm.samples_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&cold.samples_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&legacy_large.samples_ms, 50.0).unwrap_or(f64::NAN),
        warm.peak_rss_kib as f64 / 1024.0
    ));
    figures.put("agent_hydrate_rss_mib", Some(warm.peak_rss_kib.max(cold.peak_rss_kib) as f64 / 1024.0));
    figures.put("extract_large_ms", warm.phases_ms.get("extract").copied());
    figures.starts("large_cold", cold);
    figures.starts("large_warm", warm);
    figures.starts("legacy_large", legacy_large);
    Ok(())
}

/// Session starts with the Docker launcher (small, then large with its snapshot built), beside a
/// container of the same image that exits at once.
async fn container_starts(
    plan: &Plan,
    api: &fsync_client::Api,
    image: &str,
    owner: &Owner,
    (small, large): (Uuid, Uuid),
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let progress = Progress::new("start in containers", (plan.small_sessions + plan.large_warm) as u64);
    let none = |_| async { Ok(()) };
    let small_starts = start::starts(api, &owner.token, small, plan.small_sessions, &progress, none).await?;
    let large_starts = start::starts(api, &owner.token, large, plan.large_warm, &progress, none).await?;
    let floor = floors::container_run_ms(image, CONTAINER_FLOOR_SAMPLES).await?;
    progress.finish(&format!(
        "small p50 {:.0} ms, {} p50 {:.0} ms, a container exiting at once p50 {:.0} ms",
        percentile(&small_starts.samples_ms, 50.0).unwrap_or(f64::NAN),
        plan.large,
        percentile(&large_starts.samples_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&floor, 50.0).unwrap_or(f64::NAN),
    ));
    figures.starts("small_container", small_starts);
    figures.starts("large_container", large_starts);
    figures.put("floor_container_ms", percentile(&floor, 50.0));
    for kpi in ["start_small_container_p50_ms", "start_large_container_p50_ms"] {
        figures.floors.insert(kpi.into(), "floor_container_ms".into());
    }
    Ok(())
}

/// `unzip` and a plain copy of the large project's newest snapshot, beside the agent's extraction.
fn large_floors(stack: &Local, large: Uuid, figures: &mut Figures) -> anyhow::Result<()> {
    let zip = newest_zip(&stack.dir.path().join("storage").join("project-snapshots").join(large.to_string()))?;
    if !floors::installed("unzip") {
        figures.notes.push("`unzip` is not installed here: the unzip and copy floors are left out".into());
        return Ok(());
    }
    let work = tempfile::tempdir_in(stack.dir.path()).context("a directory for the floors")?;
    let unzipped = work.path().join("unzipped");
    figures.put("unzip_large_ms", Some(floors::unzip_ms(&zip, &unzipped)?));
    figures.put("copy_large_ms", Some(floors::copy_ms(&unzipped, &work.path().join("copied"))?));
    figures.floors.insert("extract_large_ms".into(), "unzip_large_ms".into());
    figures.floors.insert("start_large_warm_p50_ms".into(), "copy_large_ms".into());
    Ok(())
}

fn newest_zip(dir: &Path) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))?;
    let zips = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "zip"));
    let seq = |p: &PathBuf| -> i64 {
        p.file_stem().and_then(|s| s.to_str()?.strip_prefix("seq-")?.parse().ok()).unwrap_or(-1)
    };
    zips.max_by_key(seq).with_context(|| format!("no snapshot zip in {}", dir.display()))
}

async fn deltas(plan: &Plan, stack: &Local, owner: &Owner, figures: &mut Figures) -> anyhow::Result<()> {
    let api = &stack.fast.api;
    let write = floors::file_write_ms(&stack.dir.path().join("file-floor"), FILE_FLOOR_SAMPLES)?;
    figures.put("floor_file_write_ms", percentile(&write, 50.0));
    let project = seed::edited_project(api, owner).await?;
    let progress = Progress::new("start the agents", plan.agents as u64);
    let mut sessions = Vec::with_capacity(plan.agents);
    let mut dirs = Vec::with_capacity(plan.agents);
    for _ in 0..plan.agents {
        let created = api.create_session(&owner.token, project).await.context("create a session")?;
        let Some(id) = created.uuid("id") else { bail!("create a session: HTTP {} {}", created.status, created.body) };
        sessions.push(id);
    }
    for id in &sessions {
        let view = start::running(api, &owner.token, *id).await?;
        dirs.push(PathBuf::from(view.project_dir));
        progress.inc(1);
    }
    progress.finish(&format!("{} agents following one project", dirs.len()));
    let deltas = edits(plan, api, owner, project, &dirs).await;
    scrape_into(api, &stack.service_key, figures).await;
    for id in sessions {
        let _ = api.stop_session(&owner.token, id).await;
    }
    figures.deltas(deltas?);
    Ok(())
}

/// Scrapes the deployment's `GET /metrics` (as the service role) into `figures`, or notes why it
/// could not.
pub async fn scrape_into(api: &fsync_client::Api, service_key: &str, figures: &mut Figures) {
    let answer = api.request(http::Method::GET, "/metrics", Some(service_key), &[], Vec::<u8>::new()).await;
    match answer {
        Ok(answer) if answer.status == 200 => {
            let text = String::from_utf8_lossy(&answer.bytes).into_owned();
            figures.notes.extend(throttled(&text));
            figures.scrape = Some(text);
        }
        Ok(answer) => figures.notes.push(format!("GET /metrics answered HTTP {}: no scrape", answer.status)),
        Err(e) => figures.notes.push(format!("GET /metrics failed ({e}): no scrape")),
    }
}

/// What the deployment refused as over its rates, by surface, as its scrape counts it: a note
/// each (a run whose traffic was throttled measured the limit, not the system).
pub fn throttled(scrape: &str) -> Vec<String> {
    scrape
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("fsync_rate_limited_total{surface=\"")?;
            let (surface, count) = rest.split_once("\"} ")?;
            let count: f64 = count.trim().parse().ok()?;
            (count > 0.0).then(|| {
                format!("the deployment refused {count} {surface} requests as over its rate (fsync_rate_limited_total)")
            })
        })
        .collect()
}

/// The edits of `plan` to the agents following `project` in `dirs`, with a progress bar.
pub async fn edits(
    plan: &Plan,
    api: &fsync_client::Api,
    owner: &Owner,
    project: Uuid,
    dirs: &[PathBuf],
) -> anyhow::Result<delta::Deltas> {
    let progress = Progress::new("edits", 1);
    let deltas = delta::run(api, &owner.token, project, dirs, plan.edit_rate, plan.edit_for).await?;
    progress.finish(&format!(
        "{} edits at {}/s to {} agents: p50 {:.2} ms (answered p50 {:.2} ms), p99 {:.2} ms, {:.2}% applied",
        deltas.edits,
        plan.edit_rate,
        deltas.agents,
        percentile(&deltas.samples_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&deltas.acked_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&deltas.samples_ms, 99.0).unwrap_or(f64::NAN),
        deltas.applied() * 100.0
    ));
    Ok(deltas)
}

async fn delivery(plan: &Plan, stack: &Local, owner: &Owner, figures: &mut Figures) -> anyhow::Result<()> {
    let api = &stack.fast.api;
    let project = seed::project(api, owner, "kpi realtime", None).await?;
    let channel =
        realtime::Channel { database_url: &stack.database_url, api, token: &owner.token, owner: owner.id, project };
    let progress = Progress::new("notify floor, delivered", (plan.samples * 2) as u64);
    let floor = realtime::notify_floor(&stack.database_url, plan.samples, &progress).await?;
    let delivered = realtime::delivered(&channel, plan.samples, &progress).await?;
    progress.finish(&format!(
        "floor p50 {:.3} ms, delivered p50 {:.3} ms",
        percentile(&floor, 50.0).unwrap_or(f64::NAN),
        percentile(&delivered, 50.0).unwrap_or(f64::NAN)
    ));
    let progress = Progress::new(&format!("fan-out to {}", plan.fanout_sockets), plan.fanout_rounds as u64);
    let fanout = realtime::fanout(&channel, plan.fanout_sockets, plan.fanout_rounds, &progress).await?;
    progress.finish(&format!("p50 {:.2} ms", percentile(&fanout, 50.0).unwrap_or(f64::NAN)));
    figures.percentiles("floor_notify", &floor);
    figures.percentiles("delivered", &delivered);
    figures.floors.insert("delivered_p50_ms".into(), "floor_notify_p50_ms".into());
    figures.put("fanout_1000_p50_ms", percentile(&fanout, 50.0));
    figures.put("fanout_1000_p99_ms", percentile(&fanout, 99.0));
    figures.series.floor_notify_ms = floor;
    figures.series.delivered_ms = delivered;
    figures.series.fanout_ms = fanout;
    Ok(())
}

/// Stepped upserts over `plan.projects` new projects of `owner`, and their knee.
pub async fn upserts(plan: &Plan, api: &fsync_client::Api, owner: &Owner, figures: &mut Figures) -> anyhow::Result<()> {
    let mut projects = Vec::with_capacity(plan.projects);
    for n in 0..plan.projects {
        projects.push(seed::project(api, owner, &format!("kpi upserts {n}"), None).await?);
    }
    let progress = Progress::new("upserts, stepped", plan.rates.len() as u64);
    let steps = throughput::steps(api, &owner.token, &projects, &plan.rates, plan.step_for, &progress).await;
    let knee = throughput::knee(&steps, UPSERT_P99_MS);
    progress.finish(&match knee {
        Some((rate, p99)) => format!("{rate:.0}/s with p99 {p99:.1} ms"),
        None => "no step completed".into(),
    });
    figures.put("upserts_per_s", knee.map(|k| k.0));
    figures.put("upserts_p99_ms", knee.map(|k| k.1));
    figures.notes.push(format!(
        "upserts_per_s is the highest rate achieved with p99 ≤ {UPSERT_P99_MS} ms over {} projects (one writer per project at a time)",
        plan.projects
    ));
    figures.series.throughput = steps;
    Ok(())
}

/// Small files staged and renamed for the file-write floor.
const FILE_FLOOR_SAMPLES: usize = 2_000;

/// The latency a sustained upsert rate must keep to count (DESIGN §11).
pub const UPSERT_P99_MS: f64 = 50.0;

/// Containers run and exited for the container floor.
const CONTAINER_FLOOR_SAMPLES: usize = 5;

#[cfg(test)]
mod tests {
    #[test]
    fn a_scrape_names_what_was_throttled() {
        let scrape = "# TYPE fsync_rate_limited_total counter\n\
                      fsync_rate_limited_total{surface=\"rpc\"} 551\n\
                      fsync_rate_limited_total{surface=\"realtime_joins\"} 0\n";
        let notes = super::throttled(scrape);
        assert_eq!(notes, ["the deployment refused 551 rpc requests as over its rate (fsync_rate_limited_total)"]);
        assert!(super::throttled("fsync_websocket_connections 3\n").is_empty());
    }
}

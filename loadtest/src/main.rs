//! `fsync-loadtest kpi [--quick] [--out DIR] [--budgets FILE] [--phases P,..] [--work-dir DIR] [--launcher process|docker [--preview-image TAG]] [--api URL --anon-key K --service-key K [--jwt-secret S]]`
//! measures the plan's KPIs and writes `DIR/report.json` and `DIR/report.html`;
//! `fsync-loadtest gate --report FILE --budgets FILE` exits non-zero on a missed budget, and
//! `fsync-loadtest gate --prometheus URL [--window 10m]` holds live metrics to the same budgets;
//! `fsync-loadtest agent --dir DIR [--exec CMD ...]` is the container agent itself (what a local run
//! spawns for each session when no `fsync-agent` binary sits beside this one).

use anyhow::Context;
use clap::{Parser, Subcommand};
use fsync_loadtest::budgets::{self, Budgets};
use fsync_loadtest::live::{self, LiveFigure, Window};
use fsync_loadtest::plan::{Phase, Plan};
use fsync_loadtest::report::Report;
use fsync_loadtest::{html, remote, run, table};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "fsync-loadtest", version, about = "The plan's KPIs beside their floors, and the rollout gate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: a large variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Measure the KPIs, write report.json and report.html, and hold them to the budgets' gate:
    /// exit 1 when it is missed.
    Kpi {
        /// The short run (well under two minutes).
        #[arg(long)]
        quick: bool,
        /// Where the reports go.
        #[arg(long, default_value = "kpi-report")]
        out: PathBuf,
        /// Budgets to show beside each figure.
        #[arg(long, default_value = "ci/kpi-budgets.toml")]
        budgets: PathBuf,
        /// Agents following the edited project (default: 100).
        #[arg(long)]
        agents: Option<usize>,
        /// Edits per second sent to them (default: 200).
        #[arg(long)]
        edit_rate: Option<u32>,
        /// Measure only these phases (comma-separated: delta, starts, delivery, upserts); the
        /// gate counts the others' figures as not measured.
        #[arg(long, value_delimiter = ',', value_parser = Phase::parse)]
        phases: Vec<Phase>,
        /// How agents start besides child processes: `docker` also times session starts (small,
        /// large warm) with agents as containers of the preview image, beside a container that
        /// exits at once.
        #[arg(long, default_value = "process", value_parser = ["process", "docker"])]
        launcher: String,
        /// The preview image of `--launcher docker` (default: FSYNC_PREVIEW_IMAGE; build it with
        /// `ci/images/build --binaries target/release`).
        #[arg(long)]
        preview_image: Option<String>,
        /// Where the run's files go (storage, the agents' directories, the floors' copies);
        /// default: /dev/shm where it exists, else the system's temporary directory.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// A deployment to measure from the client side instead of a local stack.
        #[arg(long, requires_all = ["anon_key", "service_key"])]
        api: Option<String>,
        #[arg(long)]
        anon_key: Option<String>,
        #[arg(long)]
        service_key: Option<String>,
        /// The deployment's JWT secret: the run then mints a member's token (session starts)
        /// and container tokens (edits → applied by agents running here).
        #[arg(long, requires = "api")]
        jwt_secret: Option<String>,
    },
    /// Hold a report, or live metrics, to the budgets: exit 1 when a gate is missed or unmeasured.
    #[command(group = clap::ArgGroup::new("figures").required(true).args(["report", "prometheus"]))]
    Gate {
        /// A KPI run's report.json.
        #[arg(long)]
        report: Option<PathBuf>,
        /// A Prometheus (http://host:port) scraping every instance's /metrics: the budgets'
        /// figures are read live, by PromQL over the window.
        #[arg(long)]
        prometheus: Option<String>,
        /// How far back the live figures look (a Prometheus duration).
        #[arg(long, default_value = "10m", value_parser = Window::parse, requires = "prometheus")]
        window: Window,
        #[arg(long, default_value = "ci/kpi-budgets.toml")]
        budgets: PathBuf,
    },
    /// The container agent (`fsync-agent`), as a subcommand.
    Agent(fsync_agent::process::AgentArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Agent(args) => fsync_agent::process::main(args),
        Command::Gate { report: Some(report), budgets, .. } => exit(gate(&report, &budgets)),
        Command::Gate { prometheus: Some(url), window, budgets, .. } => exit(gate_live(&url, &window, &budgets)),
        Command::Gate { .. } => unreachable!("clap requires --report or --prometheus"),
        Command::Kpi {
            quick,
            out,
            budgets,
            agents,
            edit_rate,
            phases,
            work_dir,
            launcher,
            preview_image,
            api,
            anon_key,
            service_key,
            jwt_secret,
        } => {
            let mut plan = if quick { Plan::quick() } else { Plan::full() };
            if !phases.is_empty() {
                plan.phases = phases.into_iter().collect();
            }
            plan.agents = agents.unwrap_or(plan.agents);
            plan.edit_rate = edit_rate.unwrap_or(plan.edit_rate);
            if launcher == "docker" {
                if api.is_some() {
                    eprintln!("fsync-loadtest: --launcher docker measures a local run (its third instance), not --api");
                    return ExitCode::from(2);
                }
                let Some(image) = preview_image.or_else(|| std::env::var("FSYNC_PREVIEW_IMAGE").ok()) else {
                    eprintln!(
                        "fsync-loadtest: --launcher docker needs --preview-image or FSYNC_PREVIEW_IMAGE \
                         (build one: cargo build --release -p fsync-agent -p fsync-reference && \
                         bash ci/images/build --binaries target/release)"
                    );
                    return ExitCode::from(2);
                };
                plan.container_image = Some(image);
            }
            let remote = api.map(|api| remote::Deployment {
                url: api,
                anon_key: anon_key.unwrap_or_default(),
                service_key: service_key.unwrap_or_default(),
                jwt_secret,
            });
            let work_dir = work_dir.unwrap_or_else(fsync_loadtest::machine::default_work_dir);
            exit(kpi(&plan, remote, &work_dir, &out, &budgets))
        }
    }
}

fn exit(outcome: anyhow::Result<bool>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fsync-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn kpi(
    plan: &Plan,
    remote: Option<remote::Deployment>,
    work_dir: &Path,
    out: &Path,
    budgets_file: &Path,
) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the runtime")?;
    let report = runtime.block_on(async {
        match remote {
            Some(deployment) => remote::run(plan, &deployment, &agent_command()?, work_dir).await,
            None => run::local(plan, agent_command()?, fsync_loadtest::local::DATABASE, work_dir).await,
        }
    })?;
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let budgets = Budgets::read(budgets_file);
    let verdicts = match &budgets {
        Ok(budgets) => budgets.judge(&report.kpis),
        Err(e) => {
            eprintln!("(no budgets shown: {e:#})");
            Vec::new()
        }
    };
    let bounds = budgets::bounds(&verdicts);
    std::fs::write(out.join("report.json"), report.to_json()).context("write report.json")?;
    std::fs::write(out.join("report.html"), html::render(&report, &bounds)).context("write report.html")?;
    if let Some(scrape) = &report.metrics_scrape {
        std::fs::write(out.join("metrics.txt"), scrape).context("write metrics.txt")?;
        println!("wrote {} (GET /metrics during the edits)", out.join("metrics.txt").display());
    }
    println!("{}", table::terminal(&report, &bounds));
    println!("wrote {} and {}", out.join("report.json").display(), out.join("report.html").display());
    // Without budgets there is nothing to hold the run to: the figures are the outcome.
    Ok(budgets.is_err() || verdict(&verdicts))
}

fn gate(report: &Path, budgets_file: &Path) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(report).with_context(|| format!("read {}", report.display()))?;
    let report = Report::from_json(&text).with_context(|| format!("parse {}", report.display()))?;
    let verdicts = Budgets::read(budgets_file)?.judge(&report.kpis);
    println!("{}", table::terminal(&report, &budgets::bounds(&verdicts)));
    Ok(verdict(&verdicts))
}

/// The budgets' gates, and the targets with a live reading, held to what Prometheus scraped over
/// the last `window`.
fn gate_live(url: &str, window: &Window, budgets_file: &Path) -> anyhow::Result<bool> {
    let budgets = Budgets::read(budgets_file)?;
    let prometheus = live::Prometheus::new(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    let (mut kpis, answered) = runtime.block_on(async {
        anyhow::Ok((live::measure(&prometheus, window).await?, live::scrapes_answered(&prometheus, window).await?))
    })?;
    let mut verdicts: Vec<_> =
        budgets.judge(&kpis).into_iter().filter(|v| v.kind == "gate" || LiveFigure::named(&v.kpi).is_some()).collect();
    // Live only: an instance that missed scrapes hides what its clients met.
    if let Some(answered) = answered {
        kpis.insert(live::SCRAPES_ANSWERED.to_owned(), answered);
    }
    verdicts.push(live::scrapes_verdict(answered));
    println!("live figures over the last {window}, from {url}:");
    println!("{}", table::figures_table(&kpis, &Default::default(), &budgets::bounds(&verdicts)));
    explain_live(&verdicts);
    Ok(verdict(&verdicts))
}

/// What each live figure judged means, and which gates have no live reading.
fn explain_live(verdicts: &[budgets::Verdict]) {
    let judged = |kpi: &str| verdicts.iter().any(|v| v.kpi == kpi);
    for figure in live::FIGURES.iter().filter(|f| judged(f.kpi)) {
        println!("{}: {}", figure.kpi, figure.means);
    }
    let scrapes = live::SCRAPES_ANSWERED;
    println!("{scrapes}: the least share of its scrapes any instance answered (below 1: one was down or unreachable)");
    for verdict in verdicts.iter().filter(|v| LiveFigure::named(&v.kpi).is_none() && v.kpi != scrapes) {
        println!("{}: no live reading (a KPI run measures it)", verdict.kpi);
    }
}

/// Prints each gate missed or not measured and the outcome; whether the gate passes.
fn verdict(verdicts: &[budgets::Verdict]) -> bool {
    let passes = budgets::gate_passes(verdicts);
    for verdict in verdicts.iter().filter(|v| v.kind == "gate" && v.met != Some(true)) {
        let why = if verdict.met.is_none() { "not measured" } else { "missed" };
        println!("gate {why}: {} {}", verdict.kpi, verdict.text);
    }
    println!("{}", if passes { "gate: passed" } else { "gate: FAILED" });
    passes
}

/// How sessions start their agent: `fsync-agent` beside this binary, else this binary's `agent`.
fn agent_command() -> anyhow::Result<(PathBuf, Vec<String>)> {
    let me = std::env::current_exe().context("find this program")?;
    let beside = me.with_file_name("fsync-agent");
    Ok(if beside.is_file() { (beside, Vec::new()) } else { (me, vec!["agent".to_owned()]) })
}

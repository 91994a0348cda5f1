//! `fsync-sim [--seed N | --seeds A..B] [--legacy] [--plant BUG] [--trace] [--trace-html FILE]`:
//! runs simulated worlds and checks them. Exit status 0 only when every checker held; each
//! failure prints its seed, the invariant and the command that replays it.

use clap::Parser;
use fsync_sim::{run, Config};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "fsync-sim",
    version,
    about = "The real server, agents and editors under a simulated network, with faults"
)]
struct Cli {
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (B excluded), and print a summary.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Print each run's trace.
    #[arg(long)]
    trace: bool,
    /// Plant a known bug (skip-gap-check, apply-stale, broadcast-before-commit,
    /// skip-base-catch-up, no-resync-after-listen-loss): the checkers must catch it.
    #[arg(long)]
    plant: Option<fsync_store::Plant>,
    /// Run the plan's old paths (editors broadcast their own edits; agents hydrate file by file
    /// and apply broadcasts as they come, with no seq and no catch-up).
    #[arg(long)]
    legacy: bool,
    /// Write the run as a self-contained HTML page (with --seed; with --seeds, the first
    /// failing seed's).
    #[arg(long, value_name = "FILE")]
    trace_html: Option<std::path::PathBuf>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once("..").ok_or_else(|| format!("{text:?} is not A..B"))?;
    let a = a.trim().parse().map_err(|_| format!("{a:?} is not a seed"))?;
    let b = b.trim().parse().map_err(|_| format!("{b:?} is not a seed"))?;
    if b <= a {
        return Err(format!("{text:?} is empty"));
    }
    Ok((a, b))
}

#[allow(clippy::disallowed_methods)] // the summary reports wall time
fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let (from, to) = match (cli.seed, cli.seeds) {
        (Some(seed), _) => (seed, seed + 1),
        (None, Some(range)) => range,
        (None, None) => (0, 1),
    };
    let started = Instant::now();
    let (mut failed, mut sim_seconds, mut drawn_html) = (0u64, 0f64, false);
    let (mut max_catch_ups, mut max_hydrations) = (0u64, 0u32);
    let mut by_invariant: std::collections::BTreeMap<&'static str, u64> = std::collections::BTreeMap::new();
    for seed in from..to {
        let outcome = run(&Config { plant: cli.plant, legacy: cli.legacy, ..Config::new(seed) });
        sim_seconds += outcome.sim_seconds;
        for live in outcome.liveness.values() {
            max_catch_ups = max_catch_ups.max(live.catch_ups);
            max_hydrations = max_hydrations.max(live.hydrations);
        }
        if cli.trace {
            for line in &outcome.trace {
                println!("seed {seed} {line}");
            }
        }
        let replay = replay(&cli, seed);
        let draw =
            cli.trace_html.as_ref().filter(|_| !drawn_html && (to - from == 1 || !outcome.violations.is_empty()));
        if let Some(path) = draw {
            drawn_html = true;
            match std::fs::write(path, fsync_sim::html::render(&outcome, &replay)) {
                Ok(()) => println!("seed {seed}: trace drawn in {}", path.display()),
                Err(e) => eprintln!("could not write {}: {e}", path.display()),
            }
        }
        if outcome.violations.is_empty() {
            if to - from == 1 {
                println!(
                    "seed {seed}: every checker held ({} faults, {} servers, trace {})",
                    outcome.drawn.faults.len(),
                    outcome.drawn.servers,
                    outcome.trace_hash
                );
            }
            continue;
        }
        failed += 1;
        let invariants: std::collections::BTreeSet<&'static str> =
            outcome.violations.iter().map(|v| v.invariant).collect();
        for invariant in invariants {
            *by_invariant.entry(invariant).or_default() += 1;
        }
        for violation in &outcome.violations {
            println!("seed {seed}: invariant {} violated: {}", violation.invariant, violation.detail);
        }
        println!("  replay: {replay} --trace");
    }
    let wall = started.elapsed().as_secs_f64();
    let runs = to - from;
    println!(
        "{runs} seeds{}, {failed} failed ({:.1}%); {sim_seconds:.0} simulated s in {wall:.1} wall s ({:.0} simulated s per wall s); per agent at most {max_catch_ups} catch-ups and {max_hydrations} hydrations",
        if cli.legacy { " on the legacy paths" } else { "" },
        100.0 * failed as f64 / runs as f64,
        sim_seconds / wall.max(1e-9)
    );
    for (invariant, seeds) in &by_invariant {
        println!("  invariant {invariant}: violated on {seeds} seeds");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The command that runs `seed` again as `cli` ran it.
fn replay(cli: &Cli, seed: u64) -> String {
    let plant = cli.plant.map(|p| format!(" --plant {p}")).unwrap_or_default();
    let legacy = if cli.legacy { " --legacy" } else { "" };
    format!("cargo run --release -p fsync-sim -- --seed {seed}{legacy}{plant}")
}

/// `FSYNC_SIM_LOG=debug` (any tracing filter) shows the hosts' logs, stamped with simulated time.
fn init_logs() {
    let Ok(filter) = std::env::var("FSYNC_SIM_LOG") else { return };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .try_init();
}

struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:>9.3}s", turmoil::sim_elapsed().unwrap_or_default().as_secs_f64())
    }
}

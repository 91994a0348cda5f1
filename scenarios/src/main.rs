//! `fsync-scenarios [--stack sim|real|both|containers] [--seed N] [CASE ...]`: runs cases (all of
//! them by default), prints each transcript, and checks it: expectations met, both stacks alike,
//! and the committed transcript unchanged. Exit status 0 only when every check held. The
//! containers stack needs a Docker engine and the images (`ci/images/build`); a case that reaches
//! into a launcher is skipped there, with the reason.

use clap::{Parser, ValueEnum};
use fsync_scenarios::{check, containers, real, sim, Case, Run};
use fsync_testkit::containers::{OwnImages, Services};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "fsync-scenarios", about = "Runs scenario cases on the simulator, the real stack, or both")]
struct Cli {
    /// Which stack runs the cases.
    #[arg(long, value_enum, default_value = "both")]
    stack: Which,
    /// The simulator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cases to run, by name (`scenarios/cases/NAME.scenario`); all when none is given.
    cases: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Sim,
    Real,
    Both,
    /// PostgreSQL, S3, the servers and the agents in Docker containers.
    Containers,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cases = match check::all_cases(&check::cases_dir())
        .map_err(|e| e.to_string())
        .and_then(|all| check::select(all, &cli.cases))
    {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("fsync-scenarios: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let shared = match cli.stack {
        Which::Containers => match runtime.block_on(shared_services()) {
            Ok(shared) => Some(shared),
            Err(e) => {
                eprintln!("fsync-scenarios: the containers stack: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let (mut failed, mut skipped) = (0, 0);
    for case in &cases {
        let problems = match &shared {
            Some((services, own)) => match containers::cannot_run(case) {
                Some(why) => {
                    println!("skip {} on the containers stack: {why}", case.name);
                    skipped += 1;
                    continue;
                }
                None => runtime.block_on(async {
                    check_run(case, "containers", &containers::run_case(case, services, own).await)
                }),
            },
            None => runtime.block_on(run_one(case, cli.stack, cli.seed)),
        };
        if problems.is_empty() {
            println!("ok  {}", case.name);
        } else {
            failed += 1;
            println!("FAILED  {}", case.name);
            for problem in problems {
                println!("{problem}\n");
            }
        }
    }
    println!("{} of {} cases passed ({skipped} skipped)", cases.len() - failed - skipped, cases.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The services the containers stack's cases share, and the images of the binaries beside this one.
async fn shared_services() -> Result<(Arc<Services>, OwnImages), String> {
    let (images, own) = fsync_testkit::containers::own_images("the containers stack")
        .await
        .ok_or("it needs a Docker engine and the images (see above)")?;
    let services = Services::start(&images).await.map_err(|e| format!("{e:#}"))?;
    Ok((Arc::new(services), own))
}

async fn run_one(case: &Case, which: Which, seed: u64) -> Vec<String> {
    let mut runs: Vec<(&str, Run)> = Vec::new();
    if which != Which::Real {
        let case = case.clone();
        let run = tokio::task::spawn_blocking(move || sim::run_case(&case, seed)).await.expect("the simulation ran");
        runs.push(("sim", run));
    }
    if which != Which::Sim {
        match real::agent_bin() {
            Ok(bin) => runs.push(("real", real::run_case(case, bin).await)),
            Err(e) => return vec![e],
        }
    }
    let mut problems = Vec::new();
    for (stack, run) in &runs {
        problems.extend(check_run(case, stack, run));
    }
    if let [(_, sim), (_, real)] = runs.as_slice() {
        problems.extend(check::same_on_both(case, &sim.transcript, &real.transcript).err());
    }
    problems
}

/// Prints `run` and checks it: its expectations met, the committed transcript written.
fn check_run(case: &Case, stack: &str, run: &Run) -> Vec<String> {
    println!("--- {} on the {stack} stack ---\n{}", case.name, run.transcript);
    let mut problems: Vec<String> = check::expectations(case, stack, run).err().into_iter().collect();
    match check::committed(case) {
        Some(committed) if committed.trim_end() != run.transcript.trim_end() => problems.push(format!(
            "{} on the {stack} stack differs from the committed transcript\n{}",
            case.name,
            check::diff("committed", &committed, stack, &run.transcript)
        )),
        Some(_) => {}
        None => problems.push(format!(
            "{} has no committed transcript yet (run the tests and review it with cargo insta)",
            case.name
        )),
    }
    problems
}

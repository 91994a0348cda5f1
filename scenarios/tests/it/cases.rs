//! Every case in `scenarios/cases/`, on both stacks. A missed expectation, a transcript that
//! differs from the committed one, or two stacks that disagree fails with a readable diff.
//! `cargo insta review` accepts a changed transcript once it has been read.

use fsync_scenarios::{check, containers, real, sim, Case, Run};
use fsync_testkit::containers::Services;

fn cases() -> Vec<Case> {
    check::all_cases(&check::cases_dir()).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_transcript(case: &Case, transcript: &str) {
    insta::with_settings!({snapshot_path => check::transcripts_dir(), prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(case.name.as_str(), transcript);
    });
}

/// Runs `case` in the simulator with `seed` on a blocking thread (a simulation owns its thread).
async fn simulate(case: &Case, seed: u64) -> Run {
    let owned = case.clone();
    tokio::task::spawn_blocking(move || sim::run_case(&owned, seed)).await.expect("the simulation ran")
}

/// Each case runs on the simulator (seed 1) and on the real stack (PostgreSQL, the server, agent
/// processes, local storage) at the same time; both must meet every expectation, write the
/// same transcript, and that transcript must be the committed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_both_stacks() {
    let bin = real::agent_bin().unwrap_or_else(|e| panic!("{e}"));
    let cases = cases();
    assert!(cases.len() >= 15, "the suite covers the plan's flows: {} cases", cases.len());
    for case in &cases {
        let (simulated, real) = tokio::join!(simulate(case, 1), real::run_case(case, bin.clone()));
        for (stack, run) in [("sim", &simulated), ("real", &real)] {
            if let Err(e) = check::expectations(case, stack, run) {
                panic!("{e}");
            }
        }
        if let Err(e) = check::same_on_both(case, &simulated.transcript, &real.transcript) {
            panic!("{e}");
        }
        assert_transcript(case, &real.transcript);
    }
}

/// Simulator seeds beyond the first: `FSYNC_SCENARIO_SEEDS=N` runs seeds 2..=N (none by
/// default). The seed moves latencies and ids, never an outcome: every seed writes the
/// committed transcript.
#[test]
fn more_simulator_seeds_write_the_same_transcripts() {
    let seeds: u64 = std::env::var("FSYNC_SCENARIO_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    for seed in 2..=seeds {
        for case in &cases() {
            let run = sim::run_case(case, seed);
            let replay = format!("replay: cargo run -p fsync-scenarios -- --stack sim --seed {seed} {}", case.name);
            if let Err(e) = check::expectations(case, "sim", &run) {
                panic!("seed {seed} ({replay}): {e}");
            }
            eprintln!("seed {seed}: {} ({replay})", case.name);
            assert_transcript(case, &run.transcript);
        }
    }
}

/// The containers stack: PostgreSQL, S3, the servers and the agents in Docker containers on a
/// private network, the services shared by the cases. Every case that does not reach into a
/// launcher (which runs inside the server containers there) meets its expectations and writes
/// the committed transcript; the ones that do are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_that_can_on_the_containers_stack() {
    let Some((images, own)) = fsync_testkit::containers::own_images("the containers stack").await else { return };
    let services = std::sync::Arc::new(Services::start(&images).await.expect("the shared services"));
    let mut cannot = Vec::new();
    for case in &cases() {
        if let Some(why) = containers::cannot_run(case) {
            eprintln!("{} does not run on the containers stack: {why}", case.name);
            cannot.push(case.name.clone());
            continue;
        }
        let started = fsync_testkit::now();
        let run = containers::run_case(case, &services, &own).await;
        eprintln!("{}: {:.1} s on the containers stack", case.name, started.elapsed().as_secs_f64());
        if let Err(e) = check::expectations(case, "containers", &run) {
            panic!("{e}");
        }
        assert_transcript(case, &run.transcript);
    }
    assert_eq!(
        cannot,
        ["removed-member-cut-off", "write-between-snapshot-and-join"],
        "the cases that hold or watch agents"
    );
}

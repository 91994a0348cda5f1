//! Every case in `scenarios/cases/`, on both stacks. A missed expectation, a transcript that
//! differs from the committed one, or two stacks that disagree fails with a readable diff.
//! `cargo insta review` accepts a changed transcript once it has been read.

use fsync_scenarios::{check, real, sim, Case};

fn cases() -> Vec<Case> {
    check::all_cases(&check::cases_dir()).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_transcript(case: &Case, transcript: &str) {
    insta::with_settings!({snapshot_path => check::transcripts_dir(), prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(case.name.as_str(), transcript);
    });
}

/// Simulator seeds each case runs with: `FSYNC_SCENARIO_SEEDS` (default 1: seed 1 only).
fn seeds() -> u64 {
    std::env::var("FSYNC_SCENARIO_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1).max(1)
}

/// The simulator runs every case fast; its transcript is the committed one, whatever the seed
/// (the seed moves latencies and ids, never an outcome).
#[test]
fn every_case_on_the_simulator() {
    let cases = cases();
    assert!(cases.len() >= 15, "the suite covers the plan's flows: {} cases", cases.len());
    for seed in 1..=seeds() {
        for case in &cases {
            let run = sim::run_case(case, seed);
            if let Err(e) = check::expectations(case, "sim", &run) {
                panic!(
                    "seed {seed} (replay: cargo run -p fsync-scenarios -- --stack sim --seed {seed} {}): {e}",
                    case.name
                );
            }
            eprintln!("seed {seed}: {}", case.name);
            assert_transcript(case, &run.transcript);
        }
    }
}

/// The real stack (PostgreSQL, the server, agent processes, local storage) writes the same
/// transcript as the simulator for every case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_the_real_stack_matches_the_simulator() {
    let bin = real::agent_bin().unwrap_or_else(|e| panic!("{e}"));
    for case in &cases() {
        let run = real::run_case(case, bin.clone()).await;
        let owned = case.clone();
        let sim = tokio::task::spawn_blocking(move || sim::run_case(&owned, 1)).await.expect("the simulation ran");
        if let Err(e) = check::expectations(case, "real", &run) {
            panic!("{e}");
        }
        if let Err(e) = check::same_on_both(case, &sim.transcript, &run.transcript) {
            panic!("{e}");
        }
        assert_transcript(case, &run.transcript);
    }
}

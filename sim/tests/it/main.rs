//! The simulator's own tests: a fixed seed set passes every checker (more with
//! `FSYNC_SIM_SEEDS=N`), and the same seed gives the same run.

use fsync_sim::{run, Config};

/// Seeds the test command runs (a few seconds); `FSYNC_SIM_SEEDS` runs more.
fn seeds() -> u64 {
    std::env::var("FSYNC_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

#[test]
fn every_checker_holds_on_the_fixed_seed_set() {
    let mut failures = Vec::new();
    for seed in 0..seeds() {
        let outcome = run(&Config::new(seed));
        for violation in outcome.violations {
            failures.push(format!(
                "seed {seed}: {} — {} (replay: cargo run -p fsync-sim -- --seed {seed} --trace)",
                violation.invariant, violation.detail
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same seed gives the same trace, byte for byte; another seed another one.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 6, 18] {
        let first = run(&Config::new(seed));
        let again = run(&Config::new(seed));
        assert!(first.trace.len() > 40, "a real run: {} lines", first.trace.len());
        assert_eq!(first.trace, again.trace, "seed {seed} replays");
        assert_eq!(first.trace_hash, again.trace_hash);
    }
    assert_ne!(run(&Config::new(3)).trace_hash, run(&Config::new(4)).trace_hash);
}

/// The faults a seed draws are the seed's: some seeds have none, and seeds differ in how many
/// kinds of fault they enable (swarm testing).
#[test]
fn fault_kinds_are_drawn_per_seed() {
    use fsync_sim::world::{draw_faults, FaultKind};
    let kind = |k: &FaultKind| match k {
        FaultKind::Partition(_) => 0,
        FaultKind::Latency(_) => 1,
        FaultKind::ServerRestart => 2,
        FaultKind::DropBroadcasts(_) => 3,
        FaultKind::LoseFeed => 4,
        FaultKind::LateEvent(_) => 5,
    };
    let enabled: Vec<std::collections::BTreeSet<u8>> = (0..50)
        .map(|seed| {
            let faults = draw_faults(&Config::new(seed), &mut fastrand::Rng::with_seed(seed));
            faults.iter().map(|f| kind(&f.kind)).collect()
        })
        .collect();
    assert!(enabled.iter().any(|k| k.is_empty()), "some seeds have no faults");
    let sizes: std::collections::BTreeSet<usize> = enabled.iter().map(|k| k.len()).collect();
    assert!(sizes.len() >= 3, "seeds differ in how many kinds they enable: {sizes:?}");
    assert_eq!(
        draw_faults(&Config::new(7), &mut fastrand::Rng::with_seed(7)),
        draw_faults(&Config::new(7), &mut fastrand::Rng::with_seed(7))
    );
}

/// Planted bugs are caught: each with the first seed that catches it in `0..200` pinned here
/// (`fsync-sim --seeds 0..200 --plant BUG` gives the figure; a change to the world moves the
/// seeds: find them again with that command).
#[test]
fn planted_bugs_are_caught() {
    use fsync_store::Plant;
    for (plant, seed) in [
        (Plant::SkipGapCheck, 51),
        (Plant::ApplyStale, 5),
        (Plant::BroadcastBeforeCommit, 0),
        (Plant::SkipBaseCatchUp, 1),
        (Plant::NoResyncAfterListenLoss, 130),
    ] {
        let planted = run(&Config { plant: Some(plant), ..Config::new(seed) });
        assert!(!planted.violations.is_empty(), "{plant} at seed {seed} went unnoticed");
        let honest = run(&Config::new(seed));
        assert!(honest.violations.is_empty(), "seed {seed} fails without a plant: {:?}", honest.violations);
    }
}

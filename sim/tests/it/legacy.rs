//! The plan's old paths diverge where the `seq` design holds, and the page drawn of a failure
//! shows it.

use fsync_sim::{run, Config};

/// A seed whose legacy run ends with an agent that never converges (`fsync-sim --seeds 0..40
/// --legacy` lists more); the same world on the `seq` design passes every checker.
const DIVERGING: u64 = 10;

#[test]
fn the_legacy_paths_diverge_where_seq_holds() {
    let legacy = run(&Config { legacy: true, ..Config::new(DIVERGING) });
    let invariants: Vec<&str> = legacy.violations.iter().map(|v| v.invariant).collect();
    assert!(invariants.contains(&"1 convergence"), "the legacy run diverges for good: {invariants:?}");
    let again = run(&Config { legacy: true, ..Config::new(DIVERGING) });
    assert_eq!(legacy.trace_hash, again.trace_hash, "the failure replays exactly");
    let seq = run(&Config::new(DIVERGING));
    assert!(seq.violations.is_empty(), "the seq design holds on seed {DIVERGING}: {:?}", seq.violations);
}

#[test]
fn a_failure_is_drawn_as_a_page() {
    let outcome = run(&Config { legacy: true, ..Config::new(DIVERGING) });
    let replay = format!("cargo run --release -p fsync-sim -- --seed {DIVERGING} --legacy");
    let page = fsync_sim::html::render(&outcome, &replay);
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
    for lane in ["server-0", "editor-0", "agent-0", "driver", "watcher"] {
        assert!(page.contains(&format!(">{lane}</text>")), "a lane for {lane}");
    }
    assert!(page.contains("marker-end=\"url(#arrow)\""), "messages are arrows");
    assert!(page.contains("class=band"), "faults are shaded");
    assert!(page.contains("id=\"violation-0\"") && page.contains("href=\"#violation-0\""), "the violation is marked");
    assert!(page.contains(&replay), "the page says how to replay it");
    assert_eq!(page.matches("<g").count(), page.matches("</g>").count(), "groups are closed");
    assert!(!page.contains("<link") && !page.contains("src=\""), "self-contained: nothing loaded from elsewhere");
}

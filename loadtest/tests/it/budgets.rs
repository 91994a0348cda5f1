//! Budgets hold a report: gates decide, targets are reported; a figure that was not measured
//! fails its gate; a budgets file with an unclear limit is refused.

use fsync_loadtest::budgets::{self, Budgets};
use fsync_loadtest::report::{Machine, Mode, Report, Series, VERSION};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn budgets_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/kpi-budgets.toml")
}

pub fn report(kpis: &[(&str, f64)]) -> Report {
    Report {
        version: VERSION,
        mode: Mode::Local,
        quick: true,
        machine: Machine { cores: 2, memory_mib: 1024, cpu: "test".into(), os: "test".into(), postgres: None },
        parameters: BTreeMap::new(),
        kpis: kpis.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        floors: BTreeMap::new(),
        series: Series::default(),
        notes: vec![],
        metrics_scrape: None,
    }
}

#[test]
fn the_plan_gates_and_our_targets_are_judged() {
    let budgets = Budgets::read(&budgets_file()).expect("ci/kpi-budgets.toml reads");
    let good = report(&[
        ("start_small_p50_ms", 80.0),
        ("delta_p50_ms", 3.0),
        ("delta_applied_fraction", 1.0),
        ("delta_failed_edits", 0.0),
        ("delivered_p50_ms", 0.5),
        ("floor_notify_p50_ms", 0.2),
    ]);
    let verdicts = budgets.judge(&good.kpis);
    assert!(budgets::gate_passes(&verdicts), "{verdicts:#?}");
    let target = |kpi: &str| verdicts.iter().find(|v| v.kind == "target" && v.kpi == kpi).unwrap().clone();
    assert_eq!(target("start_small_p50_ms").met, Some(false), "80 ms misses the 50 ms target");
    assert_eq!(target("delivered_p50_ms").met, Some(false), "0.5 ms is 2.5× the 0.2 ms floor");
    assert_eq!(target("delivered_p50_ms").threshold, Some(0.4));
    assert_eq!(target("upserts_per_s").met, None, "not measured");

    let slow = report(&[
        ("start_small_p50_ms", 16_000.0),
        ("delta_p50_ms", 3.0),
        ("delta_applied_fraction", 1.0),
        ("delta_failed_edits", 0.0),
    ]);
    assert!(!budgets::gate_passes(&budgets.judge(&slow.kpis)), "16 s misses the plan's 15 s");
    // Fast edits, but most of them refused (a rate limit): the plan's acceptance is that edits
    // persist and apply.
    let lossy = report(&[
        ("start_small_p50_ms", 80.0),
        ("delta_p50_ms", 3.0),
        ("delta_applied_fraction", 0.449),
        ("delta_failed_edits", 551.0),
    ]);
    let verdicts = budgets.judge(&lossy.kpis);
    assert!(!budgets::gate_passes(&verdicts), "failed edits fail the gate: {verdicts:#?}");
    let gate = |kpi: &str| verdicts.iter().find(|v| v.kind == "gate" && v.kpi == kpi).unwrap().met;
    assert_eq!((gate("delta_applied_fraction"), gate("delta_failed_edits")), (Some(false), Some(false)));
    let unmeasured = report(&[("start_small_p50_ms", 80.0)]);
    assert!(!budgets::gate_passes(&budgets.judge(&unmeasured.kpis)), "a gate with no figure fails");
}

#[test]
fn an_unclear_limit_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.toml");
    std::fs::write(&file, "[gate]\ndelta_p50_ms = { max = 1, min = 0 }\n").unwrap();
    let error = format!("{:#}", Budgets::read(&file).unwrap_err());
    assert!(error.contains("delta_p50_ms") && error.contains("exactly one"), "{error}");
    std::fs::write(&file, "[gate]\ndelta_p50_ms = { max_ratio = 2 }\n").unwrap();
    let error = format!("{:#}", Budgets::read(&file).unwrap_err());
    assert!(error.contains("needs `of`"), "{error}");
}

/// `gate` exits 0 when every gate is met and 1 (naming the miss) when one is not.
#[test]
fn the_gate_command_exits_non_zero_on_a_missed_budget() {
    let dir = tempfile::tempdir().unwrap();
    let run = |kpis: &[(&str, f64)]| {
        let path = dir.path().join("report.json");
        std::fs::write(&path, report(kpis).to_json()).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_fsync-loadtest"))
            .args(["gate", "--report"])
            .arg(&path)
            .arg("--budgets")
            .arg(budgets_file())
            .output()
            .expect("run the gate");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let all_applied = [("delta_applied_fraction", 1.0), ("delta_failed_edits", 0.0)];
    let (code, out) = run(&[&[("start_small_p50_ms", 90.0), ("delta_p50_ms", 4.0)][..], &all_applied].concat());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("gate: passed"), "{out}");
    let (code, out) = run(&[&[("start_small_p50_ms", 90.0), ("delta_p50_ms", 700.0)][..], &all_applied].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("gate missed: delta_p50_ms"), "{out}");
    let lost = [
        ("start_small_p50_ms", 90.0),
        ("delta_p50_ms", 4.0),
        ("delta_applied_fraction", 0.449),
        ("delta_failed_edits", 551.0),
    ];
    let (code, out) = run(&lost);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("gate missed: delta_applied_fraction") && out.contains("delta_failed_edits"), "{out}");
}

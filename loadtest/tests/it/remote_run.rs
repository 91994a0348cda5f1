//! A remote run (`kpi --api`) against a deployment: the reference server started here stands in
//! for a staging project, reached only through its URL and keys. With the JWT secret, sessions
//! start as a member and edits land on agents running here; without it, only upserts run and
//! the report says why.

use fsync_loadtest::local::Local;
use fsync_loadtest::plan::Plan;
use fsync_loadtest::remote::{self, Deployment};
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use std::path::PathBuf;
use std::time::Duration;

fn tiny_plan() -> Plan {
    Plan {
        small_sessions: 2,
        agents: 3,
        edit_rate: 20,
        edit_for: Duration::from_secs(1),
        rates: vec![50],
        step_for: Duration::from_secs(1),
        projects: 2,
        ..Plan::quick()
    }
}

fn agent() -> (PathBuf, Vec<String>) {
    (PathBuf::from(env!("CARGO_BIN_EXE_fsync-loadtest")), vec!["agent".to_owned()])
}

fn deployment(stack: &Local, jwt_secret: Option<&str>) -> Deployment {
    Deployment {
        url: stack.fast.url.clone(),
        anon_key: anon_key(&stack.secret),
        service_key: stack.service_key.clone(),
        jwt_secret: jwt_secret.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_jwt_secret_a_remote_run_starts_sessions_and_times_edits_on_local_agents() {
    let work = std::env::temp_dir();
    let stack = Local::start(agent(), None, "fsync_kpi_remote_test", &work).await.expect("the deployment starts");
    let report = remote::run(&tiny_plan(), &deployment(&stack, Some(DEV_JWT_SECRET)), &agent(), &work).await;
    stack.stop().await.expect("the deployment stops");
    let report = report.expect("the remote run completes");
    for kpi in ["start_small_p50_ms", "delta_p50_ms", "delta_acked_p50_ms", "upserts_per_s"] {
        assert!(report.kpis.get(kpi).is_some_and(|v| *v > 0.0), "{kpi} in {:#?}", report.kpis);
    }
    assert_eq!(report.kpis["delta_applied_fraction"], 1.0, "every edit reached every local agent");
    assert_eq!(report.series.delta_ms.len(), 20 * 3);
    assert_eq!(report.series.start_ms["small"].len(), 2);
    assert!(report.floors.is_empty(), "no server-side floor is reachable from a client");
    assert!(!report.kpis.contains_key("floor_notify_p50_ms"));
    assert!(
        report.notes.iter().any(|n| n.contains("server-side floors") && n.contains("left out")),
        "{:?}",
        report.notes
    );
    assert!(report.notes.iter().any(|n| n.contains("3 agents on this machine")), "{:?}", report.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_jwt_secret_only_upserts_run_and_the_report_says_why() {
    let work = std::env::temp_dir();
    let stack =
        Local::start(agent(), None, "fsync_kpi_remote_nosecret_test", &work).await.expect("the deployment starts");
    let report = remote::run(&tiny_plan(), &deployment(&stack, None), &agent(), &work).await;
    stack.stop().await.expect("the deployment stops");
    let report = report.expect("the remote run completes");
    assert!(report.kpis.contains_key("upserts_per_s"), "{:#?}", report.kpis);
    assert!(!report.kpis.contains_key("start_small_p50_ms") && !report.kpis.contains_key("delta_p50_ms"));
    assert!(report.notes.iter().any(|n| n.contains("without --jwt-secret")), "{:?}", report.notes);
}

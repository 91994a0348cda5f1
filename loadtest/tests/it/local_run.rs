//! A whole local run, scaled down (a tiny "large" project, a few agents, short loads): the stack
//! starts on the machine's PostgreSQL, every figure of DESIGN §12 is measured, edits reach every
//! agent with the right content, and the report holds the samples behind the figures.

use fsync_fixtures::Size;
use fsync_loadtest::plan::Plan;
use fsync_loadtest::report::Report;
use fsync_loadtest::run;
use std::path::PathBuf;
use std::time::Duration;

fn tiny_plan() -> Plan {
    Plan {
        small_sessions: 3,
        legacy_small_sessions: 2,
        large: Size::Tiny,
        large_warm: 2,
        large_cold: 1,
        legacy_large: 1,
        agents: 3,
        edit_rate: 20,
        edit_for: Duration::from_secs(1),
        rates: vec![50, 100],
        step_for: Duration::from_secs(1),
        projects: 2,
        fanout_sockets: 20,
        fanout_rounds: 2,
        samples: 10,
        stops: 3,
        ..Plan::quick()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_local_run_measures_every_figure() {
    let agent = (PathBuf::from(env!("CARGO_BIN_EXE_fsync-loadtest")), vec!["agent".to_owned()]);
    let report =
        run::local(&tiny_plan(), agent, "fsync_kpi_test", &std::env::temp_dir()).await.expect("the run completes");
    for kpi in [
        "start_small_p50_ms",
        "start_small_p95_ms",
        "start_large_warm_p50_ms",
        "start_large_cold_p50_ms",
        "start_legacy_small_p50_ms",
        "start_legacy_large_p50_ms",
        "delta_p50_ms",
        "delta_p99_ms",
        "delta_acked_p50_ms",
        "floor_notify_p50_ms",
        "floor_file_write_ms",
        "floor_delta_ms",
        "delivered_p50_ms",
        "fanout_1000_p50_ms",
        "unzip_large_ms",
        "copy_large_ms",
        "extract_large_ms",
        "upserts_per_s",
        "agent_hydrate_rss_mib",
        "floor_start_ms",
        "stop_channel_closed_p50_ms",
        "stop_agent_gone_p99_ms",
    ] {
        let value = report.kpis.get(kpi).copied();
        assert!(value.is_some_and(|v| v > 0.0), "{kpi} = {value:?} in {:#?}", report.kpis);
    }
    assert_eq!(report.kpis["delta_applied_fraction"], 1.0, "every edit on every agent, with its content");
    assert_eq!(report.kpis["delta_wrong_content"], 0.0);
    // The scrape taken while the agents followed the edits: their sockets, the edits' RPCs and
    // lags, the sessions' starts.
    let scrape = report.metrics_scrape.as_deref().expect("a scrape of GET /metrics");
    let value = |series: &str| fsync_testkit::metric(scrape, series).unwrap_or_else(|| panic!("{series} in\n{scrape}"));
    assert!(value("fsync_websocket_connections") >= 2.0, "the agents' sockets");
    assert!(value("fsync_rpc_duration_seconds_count{function=\"upsert_project_file\",outcome=\"200\"}") >= 1.0);
    assert!(value("fsync_event_lag_seconds_count{stage=\"delivered\"}") >= 1.0);
    assert!(value("fsync_session_start_seconds_count{phase=\"total\"}") >= 2.0);
    assert_eq!(report.series.delta_ms.len(), 20 * 3);
    assert_eq!(report.series.start_ms["small"].len(), 3);
    assert_eq!(report.series.throughput.len(), 2);
    assert!(report.series.start_phases_ms["large_warm"].contains_key("extract"), "{:?}", report.series.start_phases_ms);
    assert_eq!(report.floors["delivered_p50_ms"], "floor_notify_p50_ms");
    assert_eq!(report.floors["delta_p50_ms"], "floor_delta_ms");
    assert_eq!(
        report.kpis["floor_delta_ms"],
        report.kpis["floor_notify_p50_ms"] + report.kpis["floor_file_write_ms"],
        "an edit's floor is a notification and a file written"
    );
    assert_eq!(report.parameters["work_dir"], std::env::temp_dir().display().to_string());
    assert!(report.parameters["work_dir_filesystem"].as_str().is_some_and(|fs| !fs.is_empty()));
    let read = Report::from_json(&report.to_json()).expect("report.json reads back");
    assert_eq!(read.kpis.keys().collect::<Vec<_>>(), report.kpis.keys().collect::<Vec<_>>());
    assert_eq!(read.series.delta_ms.len(), report.series.delta_ms.len());
    // The figures come from real samples: each percentile is one of its samples.
    assert!(report.series.delta_ms.contains(&report.kpis["delta_p50_ms"]));
}

/// `--launcher docker`: the session starts again with agents as containers of the preview image
/// (the one built from the binaries under test), beside a container that exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_with_the_docker_launcher_times_container_starts_beside_a_container_floor() {
    let Some((_, own)) = fsync_testkit::containers::own_images("container starts in a KPI run").await else { return };
    let plan = Plan {
        phases: [fsync_loadtest::plan::Phase::Starts].into_iter().collect(),
        small_sessions: 2,
        large_warm: 1,
        container_image: Some(own.preview.clone()),
        ..tiny_plan()
    };
    let agent = (PathBuf::from(env!("CARGO_BIN_EXE_fsync-loadtest")), vec!["agent".to_owned()]);
    let report =
        run::local(&plan, agent, "fsync_kpi_docker_test", &std::env::temp_dir()).await.expect("the run completes");
    for kpi in ["start_small_container_p50_ms", "start_large_container_p50_ms", "floor_container_ms"] {
        assert!(report.kpis.get(kpi).is_some_and(|v| *v > 0.0), "{kpi} in {:#?}", report.kpis);
    }
    assert_eq!(report.series.start_ms["small_container"].len(), 2);
    assert_eq!(report.series.start_ms["large_container"].len(), 1);
    assert_eq!(report.floors["start_small_container_p50_ms"], "floor_container_ms");
    assert_eq!(report.parameters["container_image"], own.preview.as_str());
    // The container starts were the Docker launcher's: the agent reported its own phases.
    assert!(report.series.start_phases_ms["small_container"].contains_key("download"));
    let ours = format!("label=fsync.instance={}", fsync_loadtest::local::instance_of("containers"));
    let left = fsync_testkit::containers::docker_cli(&["ps", "-aq", "--filter", &ours]).unwrap();
    assert_eq!(left.trim(), "", "every session's container was removed");
}

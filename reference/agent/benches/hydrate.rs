//! Hydration figures (DESIGN §11), on the real server, PostgreSQL, local storage and spawned
//! agents:
//!
//! - snapshot zip build throughput (the Edge Function, cold) for a ~100 MB project;
//! - extraction throughput of the agent's extractor beside `unzip` on the same zip;
//! - the agent's peak RSS while hydrating that project (VmHWM of the running agent);
//! - session request → `running` for a small project (200 files), p50/p95 over 20 sessions,
//!   and for the large one with its snapshot already built.
//!
//! `cargo bench -p fsync-agent --bench hydrate` (`FSYNC_BENCH_LARGE_MB` sets the large size).
#![allow(clippy::disallowed_methods)] // a benchmark measures the real clock

use fsync_agent::extract::extract;
use fsync_protocol::api::BulkEntry;
use fsync_protocol::snapshot::ExtractLimits;
use fsync_protocol::snapshot::{SessionStatus, SessionView, SnapshotResponse};
use fsync_store::SystemClock;
use fsync_testkit::{PlatformOptions, TestApp, TestDb};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let options =
        PlatformOptions { agent_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_fsync-agent"))), ..Default::default() };
    let db = TestDb::migrated().await.expect("a test database");
    let app = fsync_testkit::spawn_app(fsync_testkit::AppOptions::on(Arc::new(db)).platform(options)).await;
    let owner = app.create_user().await;
    let token = app.user_token(owner);

    // Small project: 200 files, ~1 MB.
    let small = app.create_project(owner).await;
    seed(&app, &token, small, 200, 5 * 1024).await;
    let mut starts = Vec::new();
    for _ in 0..20 {
        let view = session_to_running(&app, &token, small).await;
        starts.push(view.timings_ms["total"]);
        stop(&app, &token, view.id).await;
    }
    starts.sort_by(f64::total_cmp);
    println!(
        "session start -> running, small project (200 files, 1 MB), 20 sessions: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (target p50 <= 250 ms)",
        pct(&starts, 50),
        pct(&starts, 95),
        starts[starts.len() - 1]
    );

    // Large project.
    let large_mb: usize = std::env::var("FSYNC_BENCH_LARGE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let large = app.create_project(owner).await;
    let files = large_mb * 1024 / 50; // 50 KiB files
    let seeded = Instant::now();
    seed(&app, &token, large, files, 50 * 1024).await;
    println!("seeded {files} files, {large_mb} MiB, in {:.1} s", seeded.elapsed().as_secs_f64());

    let built = Instant::now();
    let snapshot = build(&app, large).await;
    let build_s = built.elapsed().as_secs_f64();
    let total = snapshot.manifest.total_size() as f64;
    println!(
        "snapshot build (cold): {:.2} s for {:.1} MiB = {:.0} MiB/s of content",
        build_s,
        total / 1048576.0,
        total / 1048576.0 / build_s
    );

    let scratch = tempfile::tempdir().unwrap();
    let zip_path = scratch.path().join("snapshot.zip");
    let download = app.api().download_signed(&snapshot.signed_url).await.unwrap();
    assert_eq!(download.status, 200, "download the snapshot");
    let bytes = download.bytes;
    std::fs::write(&zip_path, &bytes).unwrap();
    println!(
        "zip: {:.1} MiB ({:.0}% of the content)",
        bytes.len() as f64 / 1048576.0,
        100.0 * bytes.len() as f64 / total
    );

    let mut ours = Vec::new();
    let mut unzip = Vec::new();
    for round in 0..3 {
        let dest = scratch.path().join(format!("ours-{round}"));
        std::fs::create_dir(&dest).unwrap();
        let started = Instant::now();
        let manifest = snapshot.manifest.clone();
        let (zip, to) = (zip_path.clone(), dest.clone());
        tokio::task::spawn_blocking(move || extract(&zip, &manifest, &to, &ExtractLimits::default()))
            .await
            .unwrap()
            .unwrap();
        ours.push(started.elapsed().as_secs_f64());
        let dest = scratch.path().join(format!("unzip-{round}"));
        let started = Instant::now();
        let status = std::process::Command::new("unzip").arg("-qq").arg(&zip_path).arg("-d").arg(&dest).status();
        match status {
            Ok(status) if status.success() => unzip.push(started.elapsed().as_secs_f64()),
            other => println!("unzip unavailable or failed ({other:?}): no comparison"),
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "extraction (best of 3): agent {:.2} s = {:.0} MiB/s, with SHA-256 and size checks per file",
        best(&ours),
        total / 1048576.0 / best(&ours)
    );
    if !unzip.is_empty() {
        println!(
            "extraction (best of 3): unzip {:.2} s = {:.0} MiB/s; agent / unzip = {:.2}x (target <= 1.5x)",
            best(&unzip),
            total / 1048576.0 / best(&unzip),
            best(&ours) / best(&unzip)
        );
    }

    // A real session on the large project (the snapshot is built): start time and peak RSS.
    let view = session_to_running(&app, &token, large).await;
    let rss = peak_rss_kib(view.agent_pid.unwrap());
    println!(
        "session start -> running, large project, snapshot already built: {:.0} ms (target p50 <= 2 s); phases {:?}",
        view.timings_ms["total"],
        view.timings_ms.iter().map(|(k, v)| format!("{k} {v:.0}")).collect::<Vec<_>>()
    );
    println!(
        "agent peak RSS while hydrating {:.0} MiB: {:.1} MiB (target <= 32 MiB)",
        total / 1048576.0,
        rss as f64 / 1024.0
    );
    assert_eq!(dir_size(Path::new(&view.project_dir)), total as u64, "the agent hydrated everything");
    stop(&app, &token, view.id).await;
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}

/// `files` text files of `size` bytes each (deterministic pseudo-random words), in bulks of at
/// most 16 MiB.
async fn seed(app: &TestApp, token: &str, project: Uuid, files: usize, size: usize) {
    let client =
        fsync_client::FsyncClient::new(fsync_client::ClientConfig::new(&app.url, &app.anon_key).token(token)).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let words = ["const", "let", "function", "return", "import", "export", "from", "await", "value", "=>", "{", "}"];
    let per_bulk = (16 * 1024 * 1024 / size).clamp(1, 2000);
    let mut index = 0;
    while index < files {
        let mut entries = Vec::new();
        for _ in 0..per_bulk.min(files - index) {
            let mut content = String::with_capacity(size);
            while content.len() < size {
                content.push_str(words[rng.usize(0..words.len())]);
                content.push(if rng.u8(0..8) == 0 { '\n' } else { ' ' });
                content.push_str(&rng.u32(..).to_string());
            }
            content.truncate(size);
            entries.push(BulkEntry::upsert(format!("src/m{}/f{index}.ts", index % 40), "typescript", content));
            index += 1;
        }
        client.bulk_upsert_project_files(project, &entries).await.unwrap();
    }
}

async fn build(app: &TestApp, project: Uuid) -> SnapshotResponse {
    let reply = app.api().build_snapshot(&app.service_key, project).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_value(reply.body).unwrap()
}

async fn session_to_running(app: &TestApp, token: &str, project: Uuid) -> SessionView {
    let api = app.api();
    let created = api.create_session(token, project).await.unwrap();
    let created: SessionView = serde_json::from_value(created.body).unwrap();
    let within = Duration::from_secs(120);
    let view = api.wait_session(token, created.id, SessionStatus::Running, within, &SystemClock).await;
    let view = view.unwrap_or_else(|e| panic!("no running session in 120 s: {e}"));
    assert_eq!(view.status, SessionStatus::Running, "session ended: {view:?}");
    view
}

async fn stop(app: &TestApp, token: &str, id: Uuid) {
    app.api().stop_session(token, id).await.unwrap().expect_ok("stop the session");
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn dir_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

//! The real `@supabase/supabase-js` (pinned by scenarios/supabase-js/package-lock.json) against
//! the reference server: `.rpc()` and `.from().select().eq()` as a frontend calls them, the
//! unmigrated frontend's table writes on `legacy_project_files`, and Realtime private channels
//! as a frontend and a container join them.

use std::path::PathBuf;
use std::process::Command;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/supabase-js")
}

/// Runs one node test file with `env` and asserts that `passes` tests passed.
async fn run_node(file: &'static str, env: Vec<(&'static str, String)>, passes: usize) {
    let dir = scenario_dir();
    assert!(
        dir.join("node_modules/@supabase/supabase-js").exists(),
        "supabase-js is not installed in {}: run `npm ci` there (bash ci/test does it)",
        dir.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        // --test-force-exit: realtime-js's disconnect() leaves a 10 s timer behind that would
        // otherwise hold the process open after the tests are done.
        Command::new("node")
            .args(["--test", "--test-force-exit", "--test-timeout=30000", file])
            .current_dir(&dir)
            .envs(env)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "supabase-js tests in {file} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("# pass {passes}")), "all {passes} scenarios of {file} ran:\n{stdout}");
    if std::env::var_os("TEST_LOG").is_some() {
        println!("{stdout}");
    }
}

#[tokio::test]
async fn supabase_js_realtime_private_channels() {
    let f = crate::fixture().await;
    let stranger = f.app.create_user().await;
    let other_owner = f.app.create_user().await;
    let other = f.app.create_project(other_owner).await;
    let env = vec![
        ("FSYNC_API_URL", f.app.url.clone()),
        ("FSYNC_ANON_KEY", f.app.anon_key.clone()),
        ("FSYNC_PROJECT_ID", f.project.to_string()),
        ("FSYNC_OTHER_PROJECT_ID", other.to_string()),
        ("FSYNC_OWNER_TOKEN", f.owner_token.clone()),
        ("FSYNC_STRANGER_TOKEN", f.app.user_token(stranger)),
        ("FSYNC_CONTAINER_TOKEN", f.app.container_token(f.project)),
    ];
    run_node("realtime.test.mjs", env, 5).await;
}

#[tokio::test]
async fn supabase_js_calls_rpcs_and_reads_views() {
    let f = crate::fixture().await;
    let viewer = f.app.create_user().await;
    let stranger = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;

    let env = vec![
        ("FSYNC_API_URL", f.app.url.clone()),
        ("FSYNC_ANON_KEY", f.app.anon_key.clone()),
        ("FSYNC_PROJECT_ID", f.project.to_string()),
        ("FSYNC_OWNER_TOKEN", f.owner_token.clone()),
        ("FSYNC_VIEWER_TOKEN", f.app.user_token(viewer)),
        ("FSYNC_STRANGER_TOKEN", f.app.user_token(stranger)),
    ];
    run_node("rest.test.mjs", env, 3).await;
}

#[tokio::test]
async fn supabase_js_table_writes_of_an_unmigrated_frontend_become_versioned_writes() {
    let f = crate::fixture().await;
    let viewer = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;
    let env = vec![
        ("FSYNC_API_URL", f.app.url.clone()),
        ("FSYNC_ANON_KEY", f.app.anon_key.clone()),
        ("FSYNC_PROJECT_ID", f.project.to_string()),
        ("FSYNC_OWNER_TOKEN", f.owner_token.clone()),
        ("FSYNC_VIEWER_TOKEN", f.app.user_token(viewer)),
    ];
    run_node("legacy.test.mjs", env, 3).await;
    // What the database holds: every write a version of its own, one seq each, no gap.
    let client = f.app.db.connect().await.unwrap();
    let rows: Vec<(String, i32, i64, bool)> = client
        .query(
            "SELECT file_path, version, seq, is_deleted FROM public.project_files WHERE project_id = $1 ORDER BY seq",
            &[&f.project],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let want: Vec<(String, i32, i64, bool)> = vec![
        ("src/old.ts".into(), 1, 1, false),
        ("src/old.ts".into(), 2, 2, false),
        ("src/old.ts".into(), 3, 3, false),
        ("src/old.ts".into(), 4, 4, true),
        ("mixed.md".into(), 1, 5, false),
        ("mixed.md".into(), 2, 6, false),
    ];
    assert_eq!(rows, want);
}

//! The real `@supabase/supabase-js` (pinned by scenarios/supabase-js/package-lock.json) against
//! the reference server: `.rpc()` and `.from().select().eq()` as a frontend calls them.

use std::path::PathBuf;
use std::process::Command;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/supabase-js")
}

#[tokio::test]
async fn supabase_js_calls_rpcs_and_reads_views() {
    let dir = scenario_dir();
    assert!(
        dir.join("node_modules/@supabase/supabase-js").exists(),
        "supabase-js is not installed in {}: run `npm ci` there (bash ci/test does it)",
        dir.display()
    );
    let f = crate::fixture().await;
    let viewer = f.app.create_user().await;
    let stranger = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, viewer, "viewer").await;

    let app = &f.app;
    let (owner_token, viewer_token, stranger_token) =
        (f.owner_token.clone(), app.user_token(viewer), app.user_token(stranger));
    let url = app.url.clone();
    let anon = app.anon_key.clone();
    let project = f.project.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "rest.test.mjs"])
            .current_dir(&dir)
            .env("FSYNC_API_URL", url)
            .env("FSYNC_ANON_KEY", anon)
            .env("FSYNC_PROJECT_ID", project)
            .env("FSYNC_OWNER_TOKEN", owner_token)
            .env("FSYNC_VIEWER_TOKEN", viewer_token)
            .env("FSYNC_STRANGER_TOKEN", stranger_token)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "supabase-js tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("# pass 3"), "all three scenarios ran:\n{stdout}");
}

//! A session's dev server (issue 23): the `small` fixture's Vite app, loaded through the public
//! API, runs in the preview with the shared dependencies (linked, never copied); the session
//! reads `running` only once the server answers, at its `preview_url`; every edit reaches what
//! it serves; stopping the session stops the server.

use crate::support::*;
use fsync_fixtures::Size;
use fsync_protocol::snapshot::SessionStatus;
use fsync_reference::orchestrator::ProcessLauncher;
use fsync_testkit::preview::{self, DEV_SERVER};
use fsync_testkit::PlatformOptions;
use std::sync::Arc;

/// What `url` serves: its status and body.
async fn get(url: &str) -> (u16, String) {
    let answer = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (answer.status().as_u16(), answer.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_session_runs_the_fixture_dev_server_and_serves_each_edit() {
    serves_each_edit(false).await;
}

#[tokio::test]
async fn the_legacy_path_runs_the_same_dev_server() {
    serves_each_edit(true).await;
}

/// A session of the `small` fixture with the dev server, hydrated from the snapshot or (`legacy`)
/// file by file.
async fn serves_each_edit(legacy: bool) {
    let Some(deps) = preview::deps("a preview's dev server") else { return };
    let launcher = ProcessLauncher::new(agent_bin()).with_preview_deps(&deps);
    let options = PlatformOptions {
        launcher: Some(Arc::new(launcher)),
        agent_exec: Some(DEV_SERVER.into()),
        legacy_hydration: legacy,
        ..Default::default()
    };
    let app = spawn(options).await;
    let seeded = seed(&app, &[]).await;
    let fixture = fsync_fixtures::generate(Size::Small, 4);
    fsync_fixtures::load::files(&app.api(), &seeded.token, seeded.project, &fixture).await.expect("load the fixture");

    let id = start_session(&app, &seeded).await;
    let running = wait_for(&app, &seeded.token, id, SessionStatus::Running).await;
    assert_eq!(running.status, SessionStatus::Running, "{running:?}");
    assert_eq!(running.snapshot_hydration, !legacy);
    assert!(running.timings_ms.contains_key("dev_server"), "the wait is timed: {:?}", running.timings_ms);
    let url = running.preview_url.clone().expect("a preview URL");
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");

    // Running means served: the page at once, with the fixture's title.
    let (status, page) = get(&url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("<title>{}</title>", fixture.name)), "{page}");
    assert!(page.contains("/@vite/client"), "Vite's dev server serves it: {page}");
    let (status, app_module) = get(&format!("{url}src/App.tsx")).await;
    assert_eq!(status, 200, "{app_module}");

    // The dependencies are the shared ones, linked beside the project.
    let session_dir = std::path::Path::new(&running.project_dir).parent().unwrap().to_path_buf();
    let link = std::fs::read_link(session_dir.join("node_modules")).expect("node_modules is a link");
    assert_eq!(link, deps.join("node_modules"));

    // An edit through the API is what the dev server serves next.
    let marker = "Edited through fsync";
    let app_tsx = fixture.files["src/App.tsx"].text().expect("App.tsx is text");
    let edited = app_tsx.replacen("return (", &format!("const marker = {marker:?};\n  return ("), 1);
    assert_ne!(edited, app_tsx, "the edit changes App.tsx");
    seeded.client.upsert_project_file(seeded.project, "src/App.tsx", &edited, "typescript", None).await.unwrap();
    eventually("the edit served", async || get(&format!("{url}src/App.tsx")).await.1.contains(marker)).await;

    stop_session(&app, &seeded.token, id).await;
    eventually("the dev server's stop", async || reqwest::get(&url).await.is_err()).await;
}

//! The whole stack in containers on a private network (issue 22): PostgreSQL, the S3 server and
//! two server containers, every session's agent a preview container started by the Docker
//! launcher. Each test says what it shows in its name.

use fsync_client::Api;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::SessionStatus;
use fsync_reference::orchestrator::docker::{container_name, INSTANCE_LABEL, PROJECT_LABEL, SESSION_LABEL};
use fsync_store::SystemClock;
use fsync_testkit::containers::{docker_cli, hashes_in, own_images, ServerSettings, Stack};
use fsync_testkit::preview::DEV_SERVER;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use uuid::Uuid;

/// How long anything in these tests may take to settle.
const PATIENCE: Duration = Duration::from_secs(60);

/// A member with a project of a few files, on a stack with server `one`.
struct World {
    stack: Stack,
    one: Api,
    /// Server one's container (and instance id).
    one_container: String,
    token: String,
    project: Uuid,
}

async fn world(what: &str) -> Option<World> {
    let (images, own) = own_images(what).await?;
    let mut stack = Stack::start(&images, own).await.expect("the stack");
    let server = stack.start_server("one").await.expect("server one");
    let one = stack.api(&server);
    let (_, token) = stack.create_user().await.unwrap();
    let created = one.rpc(Some(&token), "create_project", json!({"p_name": "containers"})).await.unwrap();
    let project = created.uuid("id").expect("a project");
    for (path, content) in
        [("index.html", "<div id=root></div>"), ("src/App.tsx", "export default 1"), ("README.md", "hi")]
    {
        write(&one, &token, project, path, content).await.expect("seed a file");
    }
    Some(World { stack, one, one_container: server.container, token, project })
}

/// Writes a file through `api`; the answer, or why there is none.
async fn write(api: &Api, token: &str, project: Uuid, path: &str, content: &str) -> Result<Value, String> {
    let args = json!({"project_uuid": project, "p_file_path": path, "p_content": content, "p_file_type": "text"});
    let reply = api.rpc(Some(token), "upsert_project_file", args).await.map_err(|e| e.to_string())?;
    match reply.is_success() {
        true => Ok(reply.body),
        false => Err(format!("HTTP {}: {}", reply.status, reply.body)),
    }
}

/// The project's current files, path → content.
async fn project_tree(api: &Api, token: &str, project: Uuid) -> BTreeMap<String, String> {
    let files = api.rpc(Some(token), "list_current_files", json!({"project_uuid": project})).await.unwrap();
    let files = files.expect_ok("list_current_files");
    files
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| (f["file_path"].as_str().unwrap().to_owned(), f["content"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The files in a preview container's project directory, path → content hash (read there).
fn container_tree(container: &str) -> Result<BTreeMap<String, String>, String> {
    hashes_in(container, "/app/project")
}

/// Waits until every container's tree is the project's (read through `api`).
async fn converge(api: &Api, token: &str, project: Uuid, containers: &[String]) {
    let deadline = fsync_testkit::now() + PATIENCE;
    loop {
        let files = project_tree(api, token, project).await;
        let expected: BTreeMap<String, String> =
            files.into_iter().map(|(path, content)| (path, hex_sha256(content.as_bytes()))).collect();
        let trees: Vec<_> = containers.iter().map(|c| container_tree(c)).collect();
        if trees.iter().all(|tree| tree.as_ref() == Ok(&expected)) {
            return;
        }
        assert!(fsync_testkit::now() < deadline, "the containers' trees {trees:?} never became {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a session through `api` and waits until it runs; its id and container.
async fn running_session(api: &Api, token: &str, project: Uuid) -> (Uuid, String) {
    let reply = api.create_session(token, project).await.unwrap();
    let id = reply.uuid("id").unwrap_or_else(|| panic!("a session: {}", reply.body));
    let view = api.wait_session(token, id, SessionStatus::Running, PATIENCE, &SystemClock).await;
    view.unwrap_or_else(|e| panic!("session {id} runs: {e}"));
    (id, container_name(id))
}

/// Waits until the session reads `status`; its reason.
async fn session_ends(api: &Api, token: &str, id: Uuid, status: SessionStatus) -> String {
    let view = api.wait_session(token, id, status, PATIENCE, &SystemClock).await;
    view.unwrap_or_else(|e| panic!("session {id} reads {status:?}: {e}")).reason.unwrap_or_default()
}

/// Waits until the engine no longer has `container`.
async fn removed(stack: &Stack, container: &str) {
    let deadline = fsync_testkit::now() + PATIENCE;
    while stack.docker.inspect_container(container, None).await.is_ok() {
        assert!(fsync_testkit::now() < deadline, "{container} was never removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A preview container holds exactly the five variables besides its image's environment, no
/// service-role key anywhere, and runs confined: read-only root, no capabilities, limits, the
/// stack's network, labels naming its session and project, the image's non-root user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_container_holds_five_variables_runs_confined_and_follows_the_project() {
    let Some(w) = world("a preview container").await else { return };
    let (session, container) = running_session(&w.one, &w.token, w.project).await;
    let inspect = w.stack.docker.inspect_container(&container, None).await.expect("inspect");
    let image = w.stack.docker.inspect_image(&w.stack.own.preview).await.expect("the preview image");
    let image_env: BTreeSet<String> = image.config.and_then(|c| c.env).unwrap_or_default().into_iter().collect();
    let config = inspect.config.clone().expect("a config");
    let env: BTreeSet<String> = config.env.clone().unwrap_or_default().into_iter().collect();
    let added: BTreeSet<&str> =
        env.difference(&image_env).map(|v| v.split_once('=').map_or(v.as_str(), |(name, _)| name)).collect();
    let five = ["FSYNC_API_URL", "PROJECT_ID", "REALTIME_TOKEN", "SESSION_ID", "SNAPSHOT_URL"];
    assert_eq!(added, five.into_iter().collect(), "exactly the five variables besides the image's: {env:?}");
    assert!(env.contains(&format!("SESSION_ID={session}")) && env.contains(&format!("PROJECT_ID={}", w.project)));
    assert!(env.contains(&format!("FSYNC_API_URL=http://{}:54321", w.stack.api_host())), "{env:?}");
    let banner = docker_cli(&["logs", &w.one_container]).unwrap();
    assert!(
        banner.contains(&format!("docker containers of {}", w.stack.own.preview)),
        "serve names its launcher: {banner}"
    );
    let whole = serde_json::to_string(&inspect).unwrap();
    assert!(!whole.contains(&w.stack.service_key()), "no service-role key anywhere in the container");
    let labels = config.labels.unwrap_or_default();
    assert_eq!(labels.get(SESSION_LABEL), Some(&session.to_string()));
    assert_eq!(labels.get(PROJECT_LABEL), Some(&w.project.to_string()));
    assert_eq!(labels.get(INSTANCE_LABEL), Some(&w.one_container), "the instance that started it");
    assert_eq!(config.user.as_deref(), Some("preview"), "the image's non-root user");
    let host = inspect.host_config.expect("a host config");
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
    assert!(host.memory.unwrap_or(0) > 0 && host.nano_cpus.unwrap_or(0) > 0 && host.pids_limit.unwrap_or(0) > 0);
    assert_eq!(host.network_mode.as_deref(), Some(w.stack.preview_network()));
    // It reaches the servers, and not the database (it runs the project's own code).
    let api = format!("exec 3<>/dev/tcp/{}/54321", w.stack.api_host());
    docker_cli(&["exec", &container, "bash", "-c", &api]).expect("a preview reaches the API");
    let database = format!("exec 3<>/dev/tcp/{}/5432", w.stack.services.postgres_host());
    let reached = docker_cli(&["exec", &container, "bash", "-c", &database]);
    assert!(reached.is_err(), "a preview cannot reach PostgreSQL: {reached:?}");
    let root_write = docker_cli(&["exec", "--user", "root", &container, "touch", "/planted"]).unwrap_err();
    assert!(
        root_write.contains("Read-only file system"),
        "the root filesystem is read-only, even to root: {root_write}"
    );

    // It hydrated from the snapshot over the network, and applies edits.
    let containers = [container.clone()];
    converge(&w.one, &w.token, w.project, &containers).await;
    write(&w.one, &w.token, w.project, "src/App.tsx", "export default 2").await.unwrap();
    write(&w.one, &w.token, w.project, "src/new.ts", "new").await.unwrap();
    converge(&w.one, &w.token, w.project, &containers).await;

    // Stopping the session removes its container.
    w.one.stop_session(&w.token, session).await.unwrap();
    session_ends(&w.one, &w.token, session, SessionStatus::Stopped).await;
    removed(&w.stack, &container).await;
}

/// A preview container cut off its network catches up once it is back; one killed fails its
/// session with the engine's word for it, and its container is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_preview_catches_up_and_a_killed_one_fails_its_session() {
    let Some(w) = world("a cut and a killed preview").await else { return };
    let (_, cut) = running_session(&w.one, &w.token, w.project).await;
    let (killed_session, killed) = running_session(&w.one, &w.token, w.project).await;
    converge(&w.one, &w.token, w.project, &[cut.clone(), killed.clone()]).await;

    w.stack.disconnect(&cut).await.expect("disconnect the preview");
    for n in 0..3 {
        write(&w.one, &w.token, w.project, &format!("while-cut/{n}.txt"), "written while it was away").await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!container_tree(&cut).unwrap().contains_key("while-cut/0.txt"), "nothing reaches it while it is cut");
    w.stack.reconnect(&cut).await.expect("reconnect the preview");
    converge(&w.one, &w.token, w.project, &[cut.clone(), killed.clone()]).await;

    docker_cli(&["kill", &killed]).expect("kill the preview container");
    let reason = session_ends(&w.one, &w.token, killed_session, SessionStatus::Failed).await;
    assert!(reason.contains("exit code 137"), "the engine's word for it: {reason}");
    removed(&w.stack, &killed).await;
}

/// Killing a server container mid-edit loses no acknowledged write, the agents it served catch
/// up through the other, and when it starts again it fails its sessions and removes their
/// containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_server_mid_edit_loses_no_acknowledged_write_and_agents_follow_the_other() {
    let Some(mut w) = world("a server killed mid-edit").await else { return };
    // Both agents join server one: it is the only one under the API's name.
    let (first, first_container) = running_session(&w.one, &w.token, w.project).await;
    let (second, second_container) = running_session(&w.one, &w.token, w.project).await;
    let containers = [first_container.clone(), second_container.clone()];
    converge(&w.one, &w.token, w.project, &containers).await;
    let server = w.stack.start_server("two").await.expect("server two");
    let two = w.stack.api(&server);

    // Writes go through both servers; server one is killed while they do.
    let writer = {
        let (one, two, token, project) = (w.one.clone(), two.clone(), w.token.clone(), w.project);
        tokio::spawn(async move {
            let mut acknowledged = BTreeMap::new();
            for n in 0..60 {
                let (path, content) = (format!("edits/{n}.txt"), format!("edit {n}"));
                let api = if n % 2 == 0 { &one } else { &two };
                if write(api, &token, project, &path, &content).await.is_ok() {
                    acknowledged.insert(path, content);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stack.kill_server("one").await.expect("kill server one");
    let acknowledged = writer.await.unwrap();
    let tree = project_tree(&two, &w.token, w.project).await;
    assert!(acknowledged.len() >= 30, "the writes through server two were acknowledged: {}", acknowledged.len());
    for (path, content) in &acknowledged {
        assert_eq!(tree.get(path), Some(content), "an acknowledged write is there");
    }
    converge(&two, &w.token, w.project, &containers).await;

    // Server one again: it fails the sessions it no longer watches and removes their containers.
    w.stack.start_server("one").await.expect("server one again");
    for (session, container) in [(first, &first_container), (second, &second_container)] {
        let reason = session_ends(&two, &w.token, session, SessionStatus::Failed).await;
        assert!(reason.contains("restarted"), "{reason}");
        removed(&w.stack, container).await;
    }
}

/// The preview's dev server runs in its container (issue 23): the `small` fixture's Vite app,
/// loaded through the public API, served with the image's shared dependencies and reached from
/// here through the port the engine published on 127.0.0.1; the session runs once it answers,
/// an edit is what it serves next, and the session's stop removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_containers_dev_server_is_reached_on_its_published_port() {
    let Some((images, own)) = own_images("a dev server in a preview container").await else { return };
    let mut stack = Stack::start(&images, own).await.expect("the stack");
    let settings = ServerSettings { agent_exec: Some(DEV_SERVER.into()), ..ServerSettings::new("one") };
    let server = stack.start_server_with(settings).await.expect("server one");
    let api = stack.api(&server);
    let (_, token) = stack.create_user().await.unwrap();
    let created = api.rpc(Some(&token), "create_project", json!({"p_name": "dev server"})).await.unwrap();
    let project = created.uuid("id").expect("a project");
    let fixture = fsync_fixtures::generate(fsync_fixtures::Size::Small, 5);
    fsync_fixtures::load::files(&api, &token, project, &fixture).await.expect("load the fixture");

    let (id, container) = running_session(&api, &token, project).await;
    let view = api.session_view(&token, id).await.expect("the session");
    assert!(view.timings_ms.contains_key("dev_server"), "{:?}", view.timings_ms);
    let url = view.preview_url.expect("a preview URL");
    assert!(url.starts_with("http://127.0.0.1:"), "published on the host's loopback: {url}");
    let get = |path: String| async move {
        let answer = reqwest::get(&path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (answer.status().as_u16(), answer.text().await.unwrap_or_default())
    };
    let (status, page) = get(url.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("<title>{}</title>", fixture.name)), "{page}");

    let app_tsx = fixture.files["src/App.tsx"].text().expect("App.tsx is text");
    let edited = app_tsx.replacen("return (", "const marker = \"Edited in a container\";\n  return (", 1);
    write(&api, &token, project, "src/App.tsx", &edited).await.expect("the edit");
    let deadline = fsync_testkit::now() + PATIENCE;
    while !get(format!("{url}src/App.tsx")).await.1.contains("Edited in a container") {
        assert!(fsync_testkit::now() < deadline, "the edit was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stopped = api.stop_session(&token, id).await.unwrap();
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    removed(&stack, &container).await;
    assert!(reqwest::get(&url).await.is_err(), "nothing serves {url} once the session stopped");
}

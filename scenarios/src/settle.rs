//! Settling: a world is quiet when every live session's tree is the project's tree and the
//! observer has heard every event up to the project's `seq`. `quiesce` waits for that (within
//! the stack's patience); the end of a run waits for it once more and writes the project, the
//! events and every session's tree.

use crate::run::World;
use crate::stack::Stack;
use crate::transcript::{self, listing};
use fsync_protocol::snapshot::SessionStatus;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a settling world is looked at.
const POLL: Duration = Duration::from_millis(100);

/// The project as its owner reads it: its seq and path → content hash of every live file.
struct ProjectState {
    seq: i64,
    files: BTreeMap<String, String>,
}

/// Waits until the world is quiet; `quiet at seq N`, or why it is not.
pub async fn quiesce<S: Stack>(world: &mut World<'_, S>) -> String {
    let clock = world.stack.clock();
    let patience = world.stack.patience();
    let deadline = clock.now() + patience;
    loop {
        match quiet(world).await {
            Ok(seq) => return format!("quiet at seq {seq}"),
            Err(why) if clock.now() >= deadline => return format!("not quiet after {patience:?}: {why}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// The last settling, then the project, the events heard and each session's tree.
pub async fn finish<S: Stack>(world: &mut World<'_, S>) {
    let settled = quiesce(world).await;
    world.transcript.heading("end");
    world.transcript.line(settled);
    match project_state(world).await {
        Ok(project) => {
            world.transcript.heading(&format!("project at seq {}", project.seq));
            for line in listing(&project.files) {
                world.transcript.line(line);
            }
            sessions(world, &project).await;
        }
        Err(e) => world.transcript.line(format!("cannot read the project: {e}")),
    }
    world.transcript.heading("events heard");
    let events = world.observer.as_ref().map(|o| o.events()).unwrap_or_default();
    for event in events.values() {
        world.transcript.line(transcript::event(event));
    }
}

async fn sessions<S: Stack>(world: &mut World<'_, S>, project: &ProjectState) {
    if world.sessions.is_empty() {
        return;
    }
    world.transcript.heading("sessions");
    let names: Vec<String> = world.sessions.keys().cloned().collect();
    for name in names {
        let line = match session_state(world, &name).await {
            Ok(SessionState::Ended(status)) => format!("{name}  {status}"),
            Ok(SessionState::Starting(status)) => {
                format!("{name}  {status}: tree differs: {}", differences(&BTreeMap::new(), &project.files))
            }
            Ok(SessionState::Running(tree)) if tree == project.files => {
                format!("{name}  running: tree = project at seq {} ({} files)", project.seq, tree.len())
            }
            Ok(SessionState::Running(tree)) => {
                format!("{name}  running: tree differs: {}", differences(&tree, &project.files))
            }
            Err(e) => format!("{name}  {e}"),
        };
        world.transcript.line(line);
    }
}

/// Why the world is not quiet yet, or the seq it is quiet at.
async fn quiet<S: Stack>(world: &World<'_, S>) -> Result<i64, String> {
    let project = project_state(world).await?;
    if let Some(observer) = &world.observer {
        if !observer.heard_through(project.seq) {
            return Err(format!("the observer has not heard every event up to seq {}", project.seq));
        }
    }
    for name in world.sessions.keys() {
        match session_state(world, name).await? {
            SessionState::Ended(_) => {}
            SessionState::Starting(status) => return Err(format!("{name} is {status}")),
            SessionState::Running(tree) if tree != project.files => {
                return Err(format!("{name}'s tree differs: {}", differences(&tree, &project.files)))
            }
            SessionState::Running(_) => {}
        }
    }
    Ok(project.seq)
}

/// Where a session is, as a settling world looks at it.
enum SessionState {
    /// Stopped, failed (with its reason), or forgotten by a restarted server.
    Ended(String),
    /// Not running yet (`starting`, `hydrating`): its tree does not count yet.
    Starting(String),
    /// Running, with its tree (path → content hash).
    Running(BTreeMap<String, String>),
}

async fn session_state<S: Stack>(world: &World<'_, S>, name: &str) -> Result<SessionState, String> {
    let session = &world.sessions[name];
    let reply = world.api(session.server).session(world.token(&session.starter), session.id).await;
    let reply = reply.map_err(|e| format!("get {name}: {e}"))?;
    if reply.status == 404 {
        return Ok(SessionState::Ended("gone (its server restarted)".into()));
    }
    let view: fsync_protocol::snapshot::SessionView =
        serde_json::from_value(reply.body).map_err(|e| format!("decode {name}: {e}"))?;
    Ok(match (view.status, view.reason.clone()) {
        (SessionStatus::Running, _) => SessionState::Running(world.stack.agent_tree(&view)?),
        (SessionStatus::Failed, Some(reason)) => SessionState::Ended(format!("failed: {reason}")),
        (status, _) if status.is_final() => SessionState::Ended(status.as_str().to_owned()),
        (status, _) => SessionState::Starting(status.as_str().to_owned()),
    })
}

async fn project_state<S: Stack>(world: &World<'_, S>) -> Result<ProjectState, String> {
    let owner = world.token(&world.case.owner().name);
    let api = world.api(0);
    let query = format!("select=seq&id=eq.{}", world.project);
    let read = api.read(Some(owner), "projects", &query).await.map_err(|e| format!("read the project: {e}"))?;
    let seq =
        read.body.get(0).and_then(|p| p["seq"].as_i64()).ok_or_else(|| format!("read the project: {}", read.body))?;
    let reply = api
        .rpc(Some(owner), "list_current_files", json!({"project_uuid": world.project}))
        .await
        .map_err(|e| format!("list the files: {e}"))?;
    let rows = reply.body.as_array().ok_or_else(|| format!("list the files: {}", reply.body))?;
    let files = rows
        .iter()
        .map(|row| {
            let hash = row["content_hash"].as_str().map(str::to_owned).unwrap_or_default();
            (row["file_path"].as_str().unwrap_or_default().to_owned(), hash)
        })
        .collect();
    Ok(ProjectState { seq, files })
}

/// `+ added, - missing, ~ changed` paths of a tree against the project (at most 5 of each).
fn differences(tree: &BTreeMap<String, String>, project: &BTreeMap<String, String>) -> String {
    let extra: Vec<&str> = tree.keys().filter(|p| !project.contains_key(*p)).map(String::as_str).collect();
    let missing: Vec<&str> = project.keys().filter(|p| !tree.contains_key(*p)).map(String::as_str).collect();
    let changed: Vec<&str> =
        tree.iter().filter(|(p, h)| project.get(*p).is_some_and(|ph| ph != *h)).map(|(p, _)| p.as_str()).collect();
    let part = |sign: &str, paths: &[&str]| {
        let shown: Vec<String> = paths.iter().take(5).map(|p| format!("{sign} {p}")).collect();
        let more = if paths.len() > 5 { format!(" (+{} more)", paths.len() - 5) } else { String::new() };
        if shown.is_empty() {
            None
        } else {
            Some(format!("{}{more}", shown.join(", ")))
        }
    };
    [part("+", &extra), part("-", &missing), part("~", &changed)].into_iter().flatten().collect::<Vec<_>>().join("; ")
}

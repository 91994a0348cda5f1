//! The plan's old paths, for comparison only (`fsync-sim --legacy`): editors broadcast their own
//! edits after saving them (on the clients' topic, `project:<id>:client`), and the old container,
//! holding the service role as the plan's containers did, subscribes to that topic, hydrates file
//! by file through the API, then applies every broadcast as it comes: no `seq`, no ordering, no
//! catch-up. On a lost connection it joins again and goes on from whatever it has. The same
//! checkers then show what the `seq` design adds.

use crate::trace::Trace;
use anyhow::{bail, Context};
use fsync_agent::apply::ProjectDir;
use fsync_agent::config::AgentConfig;
use fsync_client::realtime::{private_join_payload, RealtimeSocket};
use fsync_client::transport::{self, Transport};
use fsync_client::{ClientConfig, FsyncClient};
use fsync_protocol::events::FileChange;
use fsync_protocol::jwt::Secret;
use fsync_protocol::realtime::Vsn;
use fsync_protocol::snapshot::{SessionStatus, StatusReport};
use fsync_reference::config::{service_role_key, DEV_JWT_SECRET};
use http::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// The event name of an editor's own broadcast.
pub const EDIT_EVENT: &str = "client:file";
/// How often the old container sends a heartbeat; a heartbeat unanswered by the next one means
/// the connection is gone.
const HEARTBEAT: Duration = Duration::from_secs(25);

/// An edit as an editor announces it: the path and its new content (`None`: deleted).
#[derive(Debug, Clone)]
pub struct Edit {
    pub path: String,
    pub content: Option<String>,
}

impl Edit {
    fn payload(&self) -> Value {
        json!({"file_path": self.path, "content": self.content, "file_type": "typescript"})
    }

    fn parse(payload: &Value) -> Option<Edit> {
        let path = payload.get("file_path")?.as_str()?.to_owned();
        Some(Edit { path, content: payload.get("content").and_then(Value::as_str).map(str::to_owned) })
    }

    fn change(self) -> FileChange {
        match self.content {
            Some(content) => FileChange::Write {
                path: self.path,
                file_type: "typescript".into(),
                content: Some(content),
                content_hash: None,
                version: 0,
            },
            None => FileChange::Delete { path: self.path, version: 0 },
        }
    }
}

/// An editor's socket for announcing its edits: opened and joined on first use, opened again
/// after a failure; an announcement that fails is lost (the old frontend fired and forgot).
pub struct Announcer {
    pub api_url: String,
    pub anon: String,
    pub token: String,
    pub transport: Transport,
    socket: Option<(RealtimeSocket, BTreeMap<Uuid, String>)>,
}

impl Announcer {
    pub fn new(api_url: String, anon: String, token: String, transport: Transport) -> Announcer {
        Announcer { api_url, anon, token, transport, socket: None }
    }

    /// Broadcasts `edits` on `project`'s channel; whether they were sent.
    pub async fn announce(&mut self, project: Uuid, edits: &[Edit]) -> bool {
        let sent = tokio::time::timeout(Duration::from_secs(5), self.try_announce(project, edits)).await;
        let ok = matches!(sent, Ok(Ok(())));
        if !ok {
            self.socket = None;
        }
        ok
    }

    async fn try_announce(&mut self, project: Uuid, edits: &[Edit]) -> anyhow::Result<()> {
        if self.socket.is_none() {
            let socket = RealtimeSocket::connect_via(&self.transport, &self.api_url, &self.anon, Vsn::V1).await?;
            self.socket = Some((socket, BTreeMap::new()));
        }
        let Some((socket, joined)) = self.socket.as_mut() else { bail!("no socket") };
        // Whatever the server sent meanwhile is read and dropped (an editor does not follow).
        while let Ok(frame) = tokio::time::timeout(Duration::ZERO, socket.recv()).await {
            if frame?.is_none() {
                bail!("the server closed the socket");
            }
        }
        let topic = client_topic(project);
        let join_ref = match joined.get(&project) {
            Some(join_ref) => join_ref.clone(),
            None => {
                let join_ref = socket.push_join(&topic, private_join_payload(&self.token)).await?;
                let (reply, _) = socket.await_reply(&join_ref).await?;
                if reply.payload.get("status").and_then(Value::as_str) != Some("ok") {
                    bail!("join refused: {}", reply.payload);
                }
                joined.insert(project, join_ref.clone());
                join_ref
            }
        };
        for edit in edits {
            let payload = json!({"type": "broadcast", "event": EDIT_EVENT, "payload": edit.payload()});
            socket.push(&topic, &join_ref, "broadcast", payload).await?;
        }
        Ok(())
    }
}

/// The topic clients broadcast their own edits on.
fn client_topic(project: Uuid) -> String {
    format!("realtime:project:{project}:client")
}

/// The old container: subscribe, hydrate file by file, apply broadcasts as they come, until
/// `shutdown`.
pub async fn run_agent(config: AgentConfig, host: String, trace: Trace, shutdown: impl Future<Output = ()>) {
    let service = service_role_key(&Secret::new(DEV_JWT_SECRET));
    tokio::select! {
        _ = shutdown => {}
        Err(e) = old_container(&config, &service, &host, &trace) => {
            trace.note(&host, format!("legacy agent failed: {e:#}"));
            report(&config, SessionStatus::Failed).await;
        }
    }
}

async fn old_container(config: &AgentConfig, service: &str, host: &str, trace: &Trace) -> anyhow::Result<()> {
    let mut socket = join(config, service).await.context("subscribe")?;
    report(config, SessionStatus::Hydrating).await;
    let dir = hydrate(config, service).await.context("hydrate file by file")?;
    report(config, SessionStatus::Running).await;
    loop {
        follow(&mut socket, &dir, host, trace).await;
        // Lost: join again and go on from whatever the directory holds.
        socket = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(socket) = join(config, service).await {
                break socket;
            }
        };
    }
}

async fn join(config: &AgentConfig, service: &str) -> anyhow::Result<RealtimeSocket> {
    let connect = RealtimeSocket::connect_via(&config.transport, &config.api_url, service, Vsn::V1);
    let mut socket = tokio::time::timeout(Duration::from_secs(10), connect).await.context("connect")??;
    let join_ref = socket.push_join(&client_topic(config.project), private_join_payload(service)).await?;
    let reply =
        tokio::time::timeout(Duration::from_secs(10), socket.await_reply(&join_ref)).await.context("join")??;
    if reply.0.payload.get("status").and_then(Value::as_str) != Some("ok") {
        bail!("join refused: {}", reply.0.payload);
    }
    Ok(socket)
}

async fn hydrate(config: &AgentConfig, service: &str) -> anyhow::Result<ProjectDir> {
    let client = FsyncClient::new(
        ClientConfig::new(&config.api_url, service)
            .token(service)
            .sources(config.sources.clone())
            .transport(config.transport.clone()),
    )?;
    let files = client.list_current_files(config.project).await?;
    let dir = ProjectDir::open(&config.dir)?;
    for file in files {
        let edit = Edit { path: file.file_path, content: file.content };
        dir.apply_with(&[edit.change()], &BTreeMap::new())?;
    }
    Ok(dir)
}

/// Applies broadcasts until the connection is lost (closed, failed, or a heartbeat unanswered).
async fn follow(socket: &mut RealtimeSocket, dir: &ProjectDir, host: &str, trace: &Trace) {
    let mut pending_heartbeat: Option<String> = None;
    loop {
        let frame = match tokio::time::timeout(HEARTBEAT, socket.recv()).await {
            Err(_) => {
                if pending_heartbeat.is_some() {
                    return;
                }
                pending_heartbeat = socket.push_heartbeat().await.ok();
                continue;
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(_) => return,
        };
        if frame.event == "phx_reply" && frame.msg_ref == pending_heartbeat {
            pending_heartbeat = None;
        }
        let event = frame.payload.get("event").and_then(Value::as_str);
        if frame.event != "broadcast" || event != Some(EDIT_EVENT) {
            continue;
        }
        let Some(edit) = frame.payload.get("payload").and_then(Edit::parse) else { continue };
        let (path, what) = (edit.path.clone(), if edit.content.is_some() { "write" } else { "delete" });
        match dir.apply_with(&[edit.change()], &BTreeMap::new()) {
            Ok(_) => trace.note(host, format!("applied a broadcast {what} of {path}")),
            Err(e) => trace.note(host, format!("legacy agent could not apply {path}: {e:#}")),
        }
    }
}

/// Reports the session's status to the orchestrator (best effort, as the old container did).
async fn report(config: &AgentConfig, status: SessionStatus) {
    let url = format!("{}/orchestrator/v1/sessions/{}/status", config.api_url, config.session);
    let body = StatusReport { status, reason: None, timings_ms: BTreeMap::new() };
    let bearer = format!("Bearer {}", config.token);
    let headers = [("apikey", config.token.as_str()), ("authorization", bearer.as_str())];
    let body = serde_json::to_string(&body).unwrap_or_default();
    if let Ok(request) = transport::request(Method::POST, &url, &headers, body) {
        let _ = config.transport.fetch(request, 1 << 20, Duration::from_secs(10)).await;
    }
}

//! The driver: starts a session per agent, waits for the editors and the faults to end, checks
//! convergence, races a late session against a write, tries a container token where it must not
//! reach, and counts how often each agent caught up and rehydrated.

use crate::check;
use crate::legacy::{Announcer, Edit};
use crate::people::People;
use crate::trace;
use crate::world::Shared;
use fsync_client::transport::{self, Transport};
use fsync_protocol::snapshot::{SessionStatus, SessionView};
use http::Method;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long, after the faults stop and the editors finish, every agent has to converge when a
/// fault stalled streams or lost broadcasts (heartbeats and the idle catch-up notice them)...
pub const QUIESCENCE: Duration = Duration::from_secs(120);
/// ...and when none did (a resync or a reconnect catches up at once).
pub const QUIESCENCE_FAST: Duration = Duration::from_secs(15);

pub struct Driver {
    pub shared: Shared,
    pub people: People,
    pub agents: usize,
    pub servers: usize,
    pub writers: usize,
    pub done: Arc<AtomicUsize>,
    pub quiet_after: Duration,
    pub quiescence: Duration,
    /// When each server restarted (its sessions are forgotten: they are not durable yet).
    pub restarts: Vec<(String, Duration)>,
}

/// A running session the driver watches.
struct Watched {
    id: Uuid,
    project: Uuid,
    dir: PathBuf,
}

const LANE: &str = "driver";

impl Driver {
    pub async fn run(self) -> turmoil::Result {
        let transport = Transport::new(Arc::new(crate::net::SimDialer));
        let mut watched = Vec::new();
        for n in 0..self.agents {
            let project = self.people.projects[n % self.people.projects.len()];
            let server = format!("server-{}", n % self.servers);
            match self.start_session(&transport, &server, project).await {
                Some(view) => {
                    self.shared.trace.note(LANE, format!("session {n} running at {} via {server}", view.id));
                    watched.push(Watched { id: view.id, project, dir: PathBuf::from(view.project_dir) });
                }
                None => self.violate("1 convergence (liveness)", format!("session {n} never reached running")),
            }
        }
        while self.done.load(Ordering::SeqCst) < self.writers || trace::now() < self.quiet_after {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.shared.trace.note(LANE, "faults over, editors done; waiting for quiescence");
        if !self.converge(&watched, self.quiescence).await {
            return Ok(());
        }
        if let Some(late) = self.late_session(&transport).await {
            watched.push(late);
            // A stream a partition wedged may still be waiting for its heartbeat to notice.
            self.converge(&watched, self.quiescence).await;
        }
        self.trespass(&transport).await;
        Ok(())
    }

    /// A late session with a write racing its start: the write lands before the snapshot is
    /// read, between that read and the agent's join, or after the join; the agent must hold it
    /// whichever it was (invariant 8).
    async fn late_session(&self, transport: &Transport) -> Option<Watched> {
        let project = self.people.projects[0];
        let server = "server-0";
        let body = json!({"project_id": project});
        let created = self.call(transport, server, Method::POST, "/orchestrator/v1/sessions", &body).await;
        let racing = json!({"project_uuid": project, "p_file_path": "src/late.ts",
            "p_content": "// written as the late session starts\n", "p_file_type": "typescript"});
        let wrote = self.call(transport, server, Method::POST, "/rest/v1/rpc/upsert_project_file", &racing).await;
        if self.shared.legacy && wrote.as_ref().is_some_and(|(s, _)| *s == 200) {
            // The old frontend broadcasts its own write.
            let url = crate::net::api_url(server);
            let mut announcer =
                Announcer::new(url, self.people.anon.clone(), self.people.owner.clone(), transport.clone());
            let edit = Edit { path: "src/late.ts".into(), content: racing["p_content"].as_str().map(str::to_owned) };
            announcer.announce(project, &[edit]).await;
        }
        self.shared.trace.note(
            LANE,
            format!("late session {:?}, racing write {:?}", created.as_ref().map(|c| c.0), wrote.map(|w| w.0)),
        );
        let Some((201, view)) = created else { return None };
        let id = view["id"].as_str()?;
        match self.wait_running(transport, server, id).await {
            Some(view) => Some(Watched { id: view.id, project, dir: PathBuf::from(view.project_dir) }),
            None => {
                self.violate("1 convergence (liveness)", "the late session never reached running".into());
                None
            }
        }
    }

    /// Invariant 7: a container token writes nothing and reads no other project.
    async fn trespass(&self, transport: &Transport) {
        let Some(placed) = self.shared.queue.placed().into_values().next() else { return };
        let server = &placed.server;
        let write = json!({"project_uuid": placed.project, "p_file_path": "src/intruder.ts",
            "p_content": "// a container writing\n", "p_file_type": "typescript"});
        let wrote = self
            .call_as(transport, server, &placed.token, Method::POST, "/rest/v1/rpc/upsert_project_file", &write)
            .await;
        if let Some((status, _)) = wrote.filter(|(s, _)| (200..300).contains(s)) {
            self.violate("7 a container token can write nothing", format!("its upsert answered {status}"));
        }
        for &other in self.people.projects.iter().filter(|p| **p != placed.project) {
            let read = json!({"project_uuid": other});
            let path = "/rest/v1/rpc/list_current_files";
            let answer = self.call_as(transport, server, &placed.token, Method::POST, path, &read).await;
            if let Some((status, rows)) = answer {
                if (200..300).contains(&status) && rows.as_array().is_some_and(|r| !r.is_empty()) {
                    let detail = format!("it read {} files of project {other}", rows.as_array().map_or(0, Vec::len));
                    self.violate("7 a container token never sees another project's data", detail);
                }
            }
        }
        self.shared
            .trace
            .note(LANE, format!("a container token of {} tried to write and to read elsewhere", placed.host));
    }

    /// Whether the agent of `dir` still runs. One that ended is a violation, unless the server
    /// that started it restarted since: sessions live in one instance's memory (durable sessions
    /// are issue 13), so a container that restarts after that cannot rehydrate.
    fn running(&self, w: &Watched) -> bool {
        let placed = self.shared.queue.placed();
        let Some(p) = placed.get(&w.dir) else { return true };
        let Some(how) = &p.ended else { return true };
        let forgotten = self.restarts.iter().any(|(server, at)| *server == p.server && *at > p.since);
        if forgotten {
            let note = format!("session {} ended after its server forgot it: {how}", w.id);
            self.shared.trace.note(LANE, note);
        } else {
            self.violate("1 convergence (liveness)", format!("the agent of session {} ended: {how}", w.id));
        }
        false
    }

    /// Waits until every running agent's directory holds its project's files, or reports those
    /// that do not.
    async fn converge(&self, watched: &[Watched], within: Duration) -> bool {
        let deadline = trace::now() + within;
        let mut live: Vec<&Watched> = watched.iter().collect();
        loop {
            live.retain(|w| self.running(w));
            let diverged: Vec<(&Watched, String)> = live
                .iter()
                .copied()
                .filter_map(|w| {
                    let expected = check::live_files(&self.shared.store, w.project);
                    let actual = check::tree(&w.dir);
                    (actual != expected).then(|| (w, check::difference(&actual, &expected)))
                })
                .collect();
            if diverged.is_empty() {
                let state = self.shared.store.snapshot();
                let seqs: Vec<i64> = self.people.projects.iter().map(|p| state.projects[p].seq).collect();
                self.shared.trace.note(LANE, format!("{} agents converged, projects at seqs {seqs:?}", live.len()));
                return true;
            }
            if trace::now() >= deadline {
                for (w, detail) in diverged {
                    self.violate("1 convergence", format!("session {} did not converge: {detail}", w.id));
                }
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates a session through `server` and waits for it to run; `None` if it never does.
    async fn start_session(&self, transport: &Transport, server: &str, project: Uuid) -> Option<SessionView> {
        let body = json!({"project_id": project});
        let mut created = None;
        for _ in 0..30 {
            match self.call(transport, server, Method::POST, "/orchestrator/v1/sessions", &body).await {
                Some((201, view)) => {
                    created = view["id"].as_str().map(str::to_owned);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        let id = created?;
        self.wait_running(transport, server, &id).await
    }

    /// Polls a session until it runs; `None` if it ends or never does.
    async fn wait_running(&self, transport: &Transport, server: &str, id: &str) -> Option<SessionView> {
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let path = format!("/orchestrator/v1/sessions/{id}");
            let Some((200, view)) = self.call(transport, server, Method::GET, &path, &Value::Null).await else {
                continue;
            };
            let view: SessionView = serde_json::from_value(view).ok()?;
            match view.status {
                SessionStatus::Running => return Some(view),
                SessionStatus::Failed | SessionStatus::Stopped => return None,
                _ => {}
            }
        }
        None
    }

    async fn call(
        &self,
        transport: &Transport,
        server: &str,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Option<(u16, Value)> {
        self.call_as(transport, server, &self.people.owner, method, path, body).await
    }

    async fn call_as(
        &self,
        transport: &Transport,
        server: &str,
        token: &str,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Option<(u16, Value)> {
        let bearer = format!("Bearer {token}");
        let headers = [("apikey", self.people.anon.as_str()), ("authorization", bearer.as_str())];
        let url = format!("{}{path}", crate::net::api_url(server));
        let request = transport::request(method, &url, &headers, body.to_string()).ok()?;
        let answer = transport.fetch(request, 1 << 20, Duration::from_secs(10)).await.ok()?;
        Some((answer.status.as_u16(), serde_json::from_slice(&answer.body).unwrap_or(Value::Null)))
    }

    fn violate(&self, invariant: &'static str, detail: String) {
        self.shared.found.report(&self.shared.trace, LANE, invariant, detail);
    }
}

//! A member's Realtime socket on the project's channel, never faulted, that writes down every
//! server event it hears, by `seq` (a repeat is heard once). It reconnects when its server goes
//! away (a restart), and counts its joins so the runner can wait for it to be back.

use fsync_client::realtime::{private_join_payload, RealtimeSocket};
use fsync_client::Api;
use fsync_protocol::events::ProjectEvent;
use fsync_protocol::realtime::Vsn;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Heartbeats keep the socket open through long waits (the server closes a silent one).
const HEARTBEAT: Duration = Duration::from_secs(20);
/// How long it waits before connecting again.
const RECONNECT: Duration = Duration::from_millis(100);

/// The events heard so far, and the task that hears them (ended when dropped).
pub struct Observer {
    events: Arc<Mutex<BTreeMap<i64, ProjectEvent>>>,
    joins: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Joins `project:<project>` on the API at `api` with `token`.
    pub fn start(api: Api, token: String, project: Uuid) -> Observer {
        let events = Arc::new(Mutex::new(BTreeMap::new()));
        let (joined, joins) = watch::channel(0);
        let task = tokio::spawn(listen(api, token, project, events.clone(), joined));
        Observer { events, joins, task }
    }

    /// Every event heard, by seq.
    pub fn events(&self) -> BTreeMap<i64, ProjectEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times it has joined.
    pub fn joins(&self) -> u64 {
        *self.joins.borrow()
    }

    /// Waits until it has joined more than `after` times.
    pub async fn joined_after(&mut self, after: u64) {
        let _ = self.joins.wait_for(|n| *n > after).await;
    }

    /// Whether every seq from 1 to `seq` has been heard.
    pub fn heard_through(&self, seq: i64) -> bool {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        (1..=seq).all(|s| events.contains_key(&s))
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(
    api: Api,
    token: String,
    project: Uuid,
    events: Arc<Mutex<BTreeMap<i64, ProjectEvent>>>,
    joined: watch::Sender<u64>,
) {
    let topic = format!("realtime:project:{project}");
    loop {
        if let Ok(socket) = join(&api, &token, &topic).await {
            joined.send_modify(|n| *n += 1);
            hear(socket, &topic, &events).await;
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

async fn join(api: &Api, token: &str, topic: &str) -> Result<RealtimeSocket, String> {
    let mut socket = RealtimeSocket::connect_via(api.transport(), &api.url, &api.anon_key, Vsn::V1)
        .await
        .map_err(|e| e.to_string())?;
    let join_ref = socket.push_join(topic, private_join_payload(token)).await.map_err(|e| e.to_string())?;
    let (reply, _) = socket.await_reply(&join_ref).await.map_err(|e| e.to_string())?;
    if reply.payload.get("status").and_then(Value::as_str) == Some("ok") {
        Ok(socket)
    } else {
        Err(format!("join refused: {}", reply.payload))
    }
}

/// Writes down broadcasts until the connection ends.
async fn hear(mut socket: RealtimeSocket, topic: &str, events: &Mutex<BTreeMap<i64, ProjectEvent>>) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let Ok(Some(frame)) = frame else { return };
                if frame.topic != topic || frame.event == "phx_close" || frame.event == "phx_error" {
                    if frame.topic == topic { return } else { continue }
                }
                if let Some(event) = project_event(&frame.payload) {
                    events.lock().unwrap_or_else(|e| e.into_inner()).entry(event.seq()).or_insert(event);
                }
            }
            _ = heartbeat.tick() => {
                if socket.push_heartbeat().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn project_event(payload: &Value) -> Option<ProjectEvent> {
    let name = payload.get("event").and_then(Value::as_str)?;
    ProjectEvent::parse(name, payload.get("payload")?)?.ok()
}

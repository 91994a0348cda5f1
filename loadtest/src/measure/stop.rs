//! Session stopped → its channel closed, and → its agent gone (DESIGN §11), across two
//! instances: each session runs on one instance and is stopped with `DELETE` through the other,
//! so the stop reaches the instance that runs it only through the database's notification. A
//! channel joined with the session's container token on the running instance (as its agent's
//! is) times the close; the agent's process, polled every millisecond, times its end. Both are
//! timed from the moment the `DELETE` is sent.

use crate::clock::{self, now};
use crate::measure::start;
use crate::progress::Progress;
use anyhow::{bail, Context};
use fsync_client::realtime::{private_join_payload, RealtimeSocket};
use fsync_client::Api;
use fsync_protocol::jwt::{self, Secret};
use fsync_protocol::realtime::{Vsn, SESSION_STOPPED};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long a stop may take to close the channel, or to end the agent.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// What `n` stops measured.
#[derive(Debug, Default)]
pub struct Stops {
    pub channel_closed_ms: Vec<f64>,
    pub agent_gone_ms: Vec<f64>,
}

/// The two instances and who starts sessions on them.
pub struct StopStack<'a> {
    /// Runs the sessions (its URL and anon key reach its Realtime).
    pub runs: &'a Api,
    pub runs_url: &'a str,
    pub anon_key: &'a str,
    /// Stops them.
    pub other: &'a Api,
    /// Signs the container token the watching channel joins with.
    pub secret: &'a Secret,
}

/// Starts `n` sessions of `project` as `token` one after another and stops each through the
/// other instance.
pub async fn stops(
    stack: &StopStack<'_>,
    token: &str,
    project: Uuid,
    n: usize,
    progress: &Progress,
) -> anyhow::Result<Stops> {
    let mut stops = Stops::default();
    for _ in 0..n {
        let (_, view) = start::start_one(stack.runs, token, project).await?;
        let pid = view.agent_pid.context("a running session has an agent pid")?;
        let watcher = watch(stack, view.id, project).await?;
        let sent = now();
        let stopped = stack.other.stop_session(token, view.id).await.context("stop the session")?;
        if !stopped.is_success() {
            bail!("stop session {}: HTTP {} {}", view.id, stopped.status, stopped.body);
        }
        let (closed, gone) = tokio::join!(closed(watcher, sent), gone(pid, sent));
        stops.channel_closed_ms.push(closed?);
        stops.agent_gone_ms.push(gone?);
        progress.inc(1);
    }
    Ok(stops)
}

/// A channel of `project` joined on the running instance with session `id`'s container token.
async fn watch(stack: &StopStack<'_>, id: Uuid, project: Uuid) -> anyhow::Result<RealtimeSocket> {
    let mut socket = RealtimeSocket::connect(stack.runs_url, stack.anon_key, Vsn::V2).await.context("connect")?;
    let claims = jwt::container_claims(&id.to_string(), &project.to_string(), clock::wall_s(), 600);
    let topic = format!("realtime:project:{project}");
    let join_ref = socket.push_join(&topic, private_join_payload(&jwt::sign(stack.secret, &claims))).await?;
    let (reply, _) = tokio::time::timeout(STOP_WITHIN, socket.await_reply(&join_ref)).await.context("join")??;
    if reply.payload.get("status").and_then(Value::as_str) != Some("ok") {
        bail!("the session's token could not join: {}", reply.payload);
    }
    Ok(socket)
}

/// Milliseconds from `sent` until the server ends the channel for the stop.
async fn closed(mut socket: RealtimeSocket, sent: Instant) -> anyhow::Result<f64> {
    let ended = async {
        loop {
            match socket.recv().await? {
                Some(frame) if frame.event == "system" => {
                    let message = frame.payload.get("message").and_then(Value::as_str).unwrap_or("");
                    if !message.starts_with(SESSION_STOPPED) {
                        bail!("the channel ended for another reason: {message}");
                    }
                    return Ok(clock::ms_since(sent));
                }
                Some(_) => {}
                None => bail!("the connection closed before the channel was ended"),
            }
        }
    };
    tokio::time::timeout(STOP_WITHIN, ended).await.context("the channel was not closed in time")?
}

/// Milliseconds from `sent` until process `pid` has ended (exited, reaped or not).
async fn gone(pid: u32, sent: Instant) -> anyhow::Result<f64> {
    let deadline = sent + STOP_WITHIN;
    while now() < deadline {
        if has_ended(pid) {
            return Ok(clock::ms_since(sent));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("agent {pid} still runs {STOP_WITHIN:?} after its session was stopped")
}

/// Whether `pid` has ended: no such process, or a zombie waiting to be reaped.
fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) state ...`: the state follows the last `)`.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

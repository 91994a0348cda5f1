//! Delivery figures beside their floor, on the run's database and its fast instance:
//! PostgreSQL's own commit → `LISTEN` latency (the floor), commit → delivered on a WebSocket
//! (the same commit through `upsert_project_file` and the server), and one event fanned out to
//! many joined sockets (commit → the last socket has it).

use crate::clock::{self, now};
use crate::local::connect;
use crate::progress::Progress;
use anyhow::{bail, Context};
use fsync_client::realtime::{private_join_payload, RealtimeSocket};
use fsync_client::Api;
use fsync_protocol::realtime::Vsn;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

/// How long one broadcast may take before the run gives up.
const EVENT_WITHIN: Duration = Duration::from_secs(10);

/// Commit → notification on a `LISTEN` connection, `samples` times.
pub async fn notify_floor(database_url: &str, samples: usize, progress: &Progress) -> anyhow::Result<Vec<f64>> {
    let (listener, mut connection) =
        tokio_postgres::connect(database_url, tokio_postgres::NoTls).await.context("connect the listener")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN fsync_kpi_floor").await?;
    let mut writer = connect(database_url).await?;
    let mut floor = Vec::with_capacity(samples);
    for i in 0..samples {
        let tx = writer.transaction().await?;
        tx.execute("SELECT pg_notify('fsync_kpi_floor', $1)", &[&i.to_string()]).await?;
        let t0 = now();
        tx.commit().await?;
        tokio::time::timeout(EVENT_WITHIN, rx.recv()).await.context("a notification in time")?;
        floor.push(clock::ms_since(t0));
        progress.inc(1);
    }
    driver.abort();
    Ok(floor)
}

/// Where delivery is measured: the database written to, the API whose sockets listen, and the
/// owner writing to their project.
pub struct Channel<'a> {
    pub database_url: &'a str,
    pub api: &'a Api,
    pub token: &'a str,
    pub owner: Uuid,
    pub project: Uuid,
}

/// Commit of `upsert_project_file` (run as the owner in SQL, as PostgREST would) → delivered on
/// a joined socket, `samples` times.
pub async fn delivered(channel: &Channel<'_>, samples: usize, progress: &Progress) -> anyhow::Result<Vec<f64>> {
    let mut socket = joined(channel).await?;
    let mut writer = connect(channel.database_url).await?;
    let claims = json!({"role": "authenticated", "sub": channel.owner}).to_string();
    let mut delivered = Vec::with_capacity(samples);
    for i in 0..samples {
        let t0 = commit_write(&mut writer, &claims, channel.project, "kpi/delivered.ts", &format!("// {i}")).await?;
        let payload = broadcast(&mut socket).await?;
        delivered.push(clock::ms_since(t0));
        if payload["payload"]["content"] != json!(format!("// {i}")) {
            bail!("delivered the wrong event: {payload}");
        }
        progress.inc(1);
    }
    Ok(delivered)
}

/// One write's commit → the last of `sockets` joined sockets has it, `rounds` times.
pub async fn fanout(
    channel: &Channel<'_>,
    sockets: usize,
    rounds: usize,
    progress: &Progress,
) -> anyhow::Result<Vec<f64>> {
    let mut fleet = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        fleet.push(joined(channel).await?);
    }
    let mut writer = connect(channel.database_url).await?;
    let claims = json!({"role": "authenticated", "sub": channel.owner}).to_string();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let mut waiting = tokio::task::JoinSet::new();
        for mut socket in fleet.drain(..) {
            waiting.spawn(async move { broadcast(&mut socket).await.map(|_| (clock::now(), socket)) });
        }
        let t0 = commit_write(&mut writer, &claims, channel.project, "kpi/fanout.ts", &format!("// fan {i}")).await?;
        let mut last = t0;
        while let Some(joined) = waiting.join_next().await {
            let (at, socket) = joined.context("a socket's task")??;
            last = last.max(at);
            fleet.push(socket);
        }
        samples.push(last.saturating_duration_since(t0).as_secs_f64() * 1e3);
        progress.inc(1);
    }
    Ok(samples)
}

/// Writes through the SQL API as the caller in `claims`; the instant of the commit.
async fn commit_write(
    writer: &mut tokio_postgres::Client,
    claims: &str,
    project: Uuid,
    path: &str,
    content: &str,
) -> anyhow::Result<Instant> {
    let tx = writer.transaction().await?;
    tx.execute(
        "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
        &[&claims],
    )
    .await?;
    tx.execute("SELECT public.upsert_project_file($1, $2, $3, 'typescript')", &[&project, &path, &content]).await?;
    let t0 = now();
    tx.commit().await?;
    Ok(t0)
}

/// A socket joined to the project's channel.
async fn joined(channel: &Channel<'_>) -> anyhow::Result<RealtimeSocket> {
    let api = channel.api;
    let mut socket = RealtimeSocket::connect_via(api.transport(), &api.url, &api.anon_key, Vsn::V2).await?;
    let topic = format!("realtime:project:{}", channel.project);
    let join_ref = socket.push_join(&topic, private_join_payload(channel.token)).await?;
    let (reply, _) = socket.await_reply(&join_ref).await?;
    if reply.payload["status"] != "ok" {
        bail!("join refused: {}", reply.payload);
    }
    Ok(socket)
}

async fn broadcast(socket: &mut RealtimeSocket) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(EVENT_WITHIN, socket.recv()).await.context("an event in time")??;
        let frame = frame.context("the socket closed")?;
        if frame.event == "broadcast" {
            return Ok(frame.payload);
        }
    }
}

//! Realtime on PostgreSQL: join authorization by the `realtime.messages` policies, client
//! broadcasts stored as messages, and the LISTEN loop that turns the shim's notifications into
//! messages in commit order.

use super::{db_error, PgStore};
use fsync_store::data::{Delivery, RealtimeMessage, TopicAccess};
use fsync_store::error::ApiError;
use fsync_store::sessions::SessionEnd;
use fsync_store::RequestAuth;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel the shim's `realtime.send` notifies on (`realtime.fsync_notify_channel()`).
pub const NOTIFY_CHANNEL: &str = "fsync_realtime";
/// The channel a live session's end is notified on (`fsync.session_ended_channel()`, 0010).
pub const SESSION_ENDED_CHANNEL: &str = "fsync_session_ended";
/// Most notifications loaded in one query.
const LOAD_BATCH: usize = 512;
/// Messages buffered between the LISTEN loop and the hub.
const LISTEN_QUEUE: usize = 4096;

/// Sets the request settings Realtime sets before evaluating policies.
const SETTINGS: &str = "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
        set_config('realtime.topic', $3, true), set_config('request.jwt.claim.sub', $4, true),
        set_config('request.jwt.claim.role', $1, true)";

impl PgStore {
    pub(super) async fn authorize_topic_pg(&self, auth: &RequestAuth, topic: &str) -> Result<TopicAccess, ApiError> {
        let mut client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let tx = client.transaction().await.map_err(|e| db_error(e, true))?;
        // A probe row, written as the server, that the caller's SELECT policy must admit.
        let probe = self.ids.uuid();
        tx.execute(
            "INSERT INTO realtime.messages (id, topic, extension, private) VALUES ($1, $2, 'broadcast', true)",
            &[&probe, &topic],
        )
        .await
        .map_err(|e| db_error(e, true))?;
        let sub = auth.claims.get("sub").and_then(|v| v.as_str()).unwrap_or("").to_owned();
        tx.query_one(SETTINGS, &[&auth.role, &auth.claims_json(), &topic, &sub])
            .await
            .map_err(|e| db_error(e, true))?;
        let read: i64 = tx
            .query_one("SELECT count(*) FROM realtime.messages WHERE id = $1", &[&probe])
            .await
            .map_err(|e| db_error(e, true))?
            .get(0);
        tx.batch_execute("SAVEPOINT fsync_write_probe").await.map_err(|e| db_error(e, true))?;
        let write = match tx
            .execute(
                "INSERT INTO realtime.messages (topic, extension, private) VALUES ($1, 'broadcast', true)",
                &[&topic],
            )
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => false,
            Err(e) => return Err(db_error(e, true)),
        };
        tx.rollback().await.map_err(|e| db_error(e, true))?;
        Ok(TopicAccess { read: read > 0, write })
    }

    pub(super) async fn publish_pg(&self, auth: &RequestAuth, message: &RealtimeMessage) -> Result<(), ApiError> {
        let mut client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let tx = client.transaction().await.map_err(|e| db_error(e, true))?;
        let id: uuid::Uuid = message.id.parse().map_err(ApiError::internal)?;
        if message.private {
            // As the caller: the INSERT policy on realtime.messages decides.
            let sub = auth.claims.get("sub").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            tx.query_one(SETTINGS, &[&auth.role, &auth.claims_json(), &message.topic, &sub])
                .await
                .map_err(|e| db_error(e, true))?;
        }
        tx.execute(
            "INSERT INTO realtime.messages (id, topic, extension, payload, event, private)
             VALUES ($1, $2, 'broadcast', $3::text::jsonb, $4, $5)",
            &[&id, &message.topic, &message.payload_json, &message.event, &message.private],
        )
        .await
        .map_err(|e| db_error(e, true))?;
        tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &message.id]).await.map_err(|e| db_error(e, true))?;
        tx.commit().await.map_err(|e| db_error(e, true))?;
        Ok(())
    }

    pub(super) async fn listen_pg(&self) -> Result<mpsc::Receiver<Delivery>, ApiError> {
        let (tx, rx) = mpsc::channel(LISTEN_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut config = self.config.clone();
        config.application_name(LISTEN_APPLICATION_NAME);
        tokio::spawn(listen_loop(config, tx, ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => Ok(rx),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::internal("the LISTEN task ended before it was ready")),
        }
    }
}

/// The `application_name` of the LISTEN connection (to find it in `pg_stat_activity`).
pub const LISTEN_APPLICATION_NAME: &str = "fsync-realtime-listen";
/// How often an idle LISTEN connection is checked, and how long the check may take: a
/// connection that died silently is noticed within about this time.
const LISTEN_PING_EVERY: Duration = Duration::from_secs(10);
const LISTEN_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps a LISTEN connection open (reconnecting with backoff) and forwards every notified
/// message and session end, in notification (= commit) order. What is committed while the
/// connection is down cannot be delivered live: after every reconnect it yields
/// [`Delivery::Resync`], so that consumers catch up by seq (and read their sessions' records).
async fn listen_loop(
    config: tokio_postgres::Config,
    out: mpsc::Sender<Delivery>,
    ready: oneshot::Sender<Result<(), ApiError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listening = false;
        match listen_once(&config, &out, &mut ready, &mut listening).await {
            ListenEnd::ConsumerGone => return,
            ListenEnd::Lost(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(error = %error.body.message, details = ?error.body.details, "realtime LISTEN connection lost; reconnecting");
            }
        }
        if listening {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

enum ListenEnd {
    ConsumerGone,
    Lost(ApiError),
}

async fn listen_once(
    config: &tokio_postgres::Config,
    out: &mpsc::Sender<Delivery>,
    ready: &mut Option<oneshot::Sender<Result<(), ApiError>>>,
    listening: &mut bool,
) -> ListenEnd {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return ListenEnd::Lost(ApiError::unavailable(e)),
    };
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel::<Notified>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let notified = if n.channel() == SESSION_ENDED_CHANNEL {
                        Notified::SessionEnded(n.payload().to_owned())
                    } else {
                        Notified::Message(n.payload().to_owned())
                    };
                    if notify_tx.send(notified).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let end = follow(&client, &mut notify_rx, out, ready, listening).await;
    driver.abort();
    end
}

/// One notification: a message's id, or `<session id>:<how it ended>`.
enum Notified {
    Message(String),
    SessionEnded(String),
}

/// A session's end as notified (`<uuid>:stopped|failed|deleted`); `None` when malformed.
fn session_ended(payload: &str) -> Option<Delivery> {
    let (id, how) = payload.split_once(':')?;
    Some(Delivery::SessionEnded { session: id.parse().ok()?, end: SessionEnd::parse(how)? })
}

/// LISTENs on `client` and forwards until the connection or the consumer goes away.
async fn follow(
    client: &tokio_postgres::Client,
    notify_rx: &mut mpsc::UnboundedReceiver<Notified>,
    out: &mpsc::Sender<Delivery>,
    ready: &mut Option<oneshot::Sender<Result<(), ApiError>>>,
    listening: &mut bool,
) -> ListenEnd {
    // This connection only ever looks messages up by their primary key. Its statement is
    // prepared once, and a generic plan made while `realtime.messages` was small is a sequential
    // scan that would then read the whole, growing table for every message.
    let listen = format!("SET enable_seqscan = off; LISTEN {NOTIFY_CHANNEL}; LISTEN {SESSION_ENDED_CHANNEL}");
    if let Err(e) = client.batch_execute(&listen).await {
        return ListenEnd::Lost(ApiError::unavailable(e));
    }
    *listening = true;
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Ok(()));
        }
        // A reconnect: whatever was committed while the connection was down was not notified.
        None => {
            if out.send(Delivery::Resync).await.is_err() {
                return ListenEnd::ConsumerGone;
            }
        }
    }
    let statement = match client
        .prepare(
            "SELECT m.id::text, m.topic, coalesce(m.event, ''), coalesce(m.payload, 'null'::jsonb)::text, coalesce(m.private, false)
             FROM realtime.messages m WHERE m.id = ANY($1::uuid[])",
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return ListenEnd::Lost(ApiError::unavailable(e)),
    };
    let mut ping = tokio::time::interval(LISTEN_PING_EVERY);
    ping.tick().await;
    loop {
        let first = tokio::select! {
            next = notify_rx.recv() => match next {
                Some(next) => next,
                None => return ListenEnd::Lost(ApiError::unavailable("the LISTEN connection closed")),
            },
            // The instance stopped: its LISTEN connection goes with it.
            _ = out.closed() => return ListenEnd::ConsumerGone,
            _ = ping.tick() => {
                match tokio::time::timeout(LISTEN_PING_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => return ListenEnd::Lost(ApiError::unavailable(e)),
                    Err(_) => return ListenEnd::Lost(ApiError::unavailable("the LISTEN connection stopped answering")),
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < LOAD_BATCH {
            match notify_rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let uuids: Vec<uuid::Uuid> = batch
            .iter()
            .filter_map(|n| match n {
                Notified::Message(id) => id.parse().ok(),
                Notified::SessionEnded(_) => None,
            })
            .collect();
        let rows = match client.query(&statement, &[&uuids]).await {
            Ok(rows) => rows,
            Err(e) => return ListenEnd::Lost(ApiError::unavailable(e)),
        };
        let mut by_id: std::collections::HashMap<String, RealtimeMessage> = rows
            .into_iter()
            .map(|row| {
                let message = RealtimeMessage {
                    id: row.get(0),
                    topic: row.get(1),
                    event: row.get(2),
                    payload_json: row.get(3),
                    private: row.get(4),
                };
                (message.id.clone(), message)
            })
            .collect();
        for notified in batch {
            let delivery = match notified {
                Notified::Message(id) => by_id.remove(&id).map(Delivery::Message),
                Notified::SessionEnded(payload) => session_ended(&payload),
            };
            if let Some(delivery) = delivery {
                if out.send(delivery).await.is_err() {
                    return ListenEnd::ConsumerGone;
                }
            }
        }
    }
}

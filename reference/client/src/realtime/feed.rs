//! [`ProjectFeed`]: one project's changes, in `seq` order, with no gap and no repeat, whatever
//! the connection does (DESIGN §5.3).
//!
//! It joins the private channel `project:<uuid>` and feeds every event to a [`Sequencer`],
//! which decides (with no I/O) to apply an event whose seq is `last_seq + 1`, to ignore older
//! ones, and on a gap (or a `bulk:apply`, or content left out of an event) to fetch
//! `list_changes_since(last_seq)` instead. After every (re)join, and when the consumer sets its
//! base seq (the snapshot's), it catches up from `last_seq`, so writes made while it was not
//! listening arrive too. It reconnects with jittered backoff, heartbeats, and pushes a refreshed
//! token to the channel.
//!
//! Events that arrive before the base seq is known are not kept: the catch-up that setting the
//! base triggers reads after they were committed, so it contains them. What matters is that the
//! channel is joined before the snapshot is read (the agent joins first), not that events are
//! held.

use super::sequencer::{Sequencer, Step};
use super::socket::{private_join_payload, RealtimeError, RealtimeSocket};
use crate::{FsyncClient, RetryPolicy};
use fsync_protocol::events::{FileChange, ProjectEvent};
use fsync_protocol::realtime::{Frame, Vsn, SESSION_STOPPED};
use fsync_protocol::time::parse_timestamp;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// How a refused join's reason begins.
const JOIN_REFUSED: &str = "join refused";

/// How a feed connects.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub api_url: String,
    pub apikey: String,
    /// The token the channel is joined with (a container token, or a member's).
    pub token: String,
    pub project: Uuid,
    pub vsn: Vsn,
    /// How often to heartbeat; a heartbeat unanswered by the next one ends the connection.
    pub heartbeat_interval: Duration,
    /// Backoff between reconnects (`max_attempts` is ignored: the feed never gives up).
    pub reconnect: RetryPolicy,
    /// How long to wait for the connection, and then for the join's reply.
    pub join_timeout: Duration,
    /// With no event for this long, catch up anyway (checked at each heartbeat): the last
    /// broadcast of a burst may have been lost without a word, and no later gap would show it.
    pub idle_catch_up: Duration,
    /// A bug planted by the simulator; `None` everywhere else.
    pub plant: Option<fsync_store::Plant>,
}

impl FeedConfig {
    /// 25 s heartbeats (realtime-js's), 2.0.0 frames, reconnect backoff 100 ms .. 5 s, a catch-up
    /// after 30 s without events.
    pub fn new(api_url: impl Into<String>, apikey: impl Into<String>, token: impl Into<String>, project: Uuid) -> Self {
        FeedConfig {
            api_url: api_url.into(),
            apikey: apikey.into(),
            token: token.into(),
            project,
            vsn: Vsn::V2,
            heartbeat_interval: Duration::from_secs(25),
            reconnect: RetryPolicy {
                max_attempts: u32::MAX,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                seed: None,
            },
            join_timeout: Duration::from_secs(10),
            idle_catch_up: Duration::from_secs(30),
            plant: None,
        }
    }
}

/// Where a batch of changes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    /// One realtime event, applied as it came.
    Live,
    /// `list_changes_since`: after a gap, a bulk, omitted content, a (re)join, or the base seq.
    CatchUp,
}

/// What a feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The channel is joined; events flow from here.
    Subscribed,
    /// Changes to apply as one unit; afterwards the consumer is at `seq`. `written_at`: when the
    /// write was made (the live event's `timestamp`, since the Unix epoch), so the consumer can
    /// tell its commit → applied lag; none for a catch-up.
    Changes { seq: i64, changes: Vec<FileChange>, source: ChangeSource, written_at: Option<Duration> },
    /// The connection ended; the feed reconnects by itself. `refused`: the server said no (it
    /// refused the join, or ended a preview session's channel), rather than the network failing.
    Disconnected { reason: String, refused: bool },
}

enum Command {
    SetBase(i64),
    SetToken(String),
}

/// Controls a running feed. Dropping every handle stops the feed.
#[derive(Clone)]
pub struct FeedHandle {
    commands: mpsc::UnboundedSender<Command>,
    last_seq: watch::Receiver<Option<i64>>,
    caught_up: watch::Receiver<Option<i64>>,
}

impl FeedHandle {
    /// Sets the seq the consumer's state reflects (the snapshot's), once: a catch-up from it
    /// and later events
    /// events apply from there, after a catch-up.
    pub fn set_base_seq(&self, seq: i64) {
        let _ = self.commands.send(Command::SetBase(seq));
    }

    /// Uses `token` from now on: pushed to the joined channel and used for catch-up calls.
    pub fn set_token(&self, token: impl Into<String>) {
        let _ = self.commands.send(Command::SetToken(token.into()));
    }

    /// The seq of the last change batch handed to the receiver (it may not be read yet).
    pub fn last_seq(&self) -> Option<i64> {
        *self.last_seq.borrow()
    }

    /// The seq the last completed catch-up reached: changed after each catch-up, once its batch
    /// (if any) is in the receiver. A consumer that set its base seq waits for this to reach it
    /// to know it holds every change made before the catch-up started.
    pub fn caught_up(&self) -> watch::Receiver<Option<i64>> {
        self.caught_up.clone()
    }
}

/// A running feed.
pub struct ProjectFeed;

impl ProjectFeed {
    /// Starts a feed; `base_seq` may be given now or later with [`FeedHandle::set_base_seq`].
    /// Events come out of the receiver, which holds at most `capacity` undelivered ones (a slow
    /// consumer slows the feed, and the server drops a connection that falls too far behind).
    pub fn start(
        config: FeedConfig,
        api: Arc<FsyncClient>,
        base_seq: Option<i64>,
        capacity: usize,
    ) -> (FeedHandle, mpsc::Receiver<FeedEvent>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::channel(capacity.max(1));
        let (seq_tx, seq_rx) = watch::channel(base_seq);
        let (caught_tx, caught_rx) = watch::channel(None);
        let feed = Feed {
            topic: format!("realtime:project:{}", config.project),
            rng: match config.reconnect.seed {
                Some(seed) => fastrand::Rng::with_seed(seed),
                None => api.sources().ids.rng(),
            },
            seq: Sequencer::new(base_seq).planted(config.plant),
            config,
            api,
            commands: command_rx,
            events,
            seq_tx,
            caught_tx,
        };
        tokio::spawn(feed.run());
        (FeedHandle { commands, last_seq: seq_rx, caught_up: caught_rx }, event_rx)
    }
}

struct Feed {
    config: FeedConfig,
    topic: String,
    api: Arc<FsyncClient>,
    seq: Sequencer,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<FeedEvent>,
    seq_tx: watch::Sender<Option<i64>>,
    caught_tx: watch::Sender<Option<i64>>,
    rng: fastrand::Rng,
}

/// Why a session ended.
enum End {
    /// Every handle is gone, or the consumer dropped the receiver.
    Stop,
    /// The connection was lost or refused; reconnect.
    Lost(String),
}

impl Feed {
    async fn run(mut self) {
        let mut retry = 0u32;
        loop {
            let started = self.api.sources().now();
            let (end, subscribed) = self.session().await;
            let reason = match end {
                End::Stop => return,
                End::Lost(reason) => reason,
            };
            tracing::debug!(project = %self.config.project, %reason, "realtime feed disconnected");
            let refused = reason.starts_with(JOIN_REFUSED) || reason.starts_with(SESSION_STOPPED);
            if self.events.send(FeedEvent::Disconnected { reason, refused }).await.is_err() {
                return;
            }
            // Back off more after every session that did not last: a join that succeeds and then
            // fails at once (catch-up refused, kicked) must not reconnect in a tight loop.
            let lasted = self.api.sources().now().saturating_duration_since(started);
            let healthy = subscribed && lasted >= self.config.heartbeat_interval;
            retry = if healthy { 0 } else { retry.saturating_add(1) };
            let delay = self.config.reconnect.delay(retry, &mut self.rng);
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    command = self.commands.recv() => match command {
                        None => return,
                        Some(command) => {
                            // Nothing is joined: remember, and the next session uses it.
                            if let Err(End::Stop) = self.command(command, None).await {
                                return;
                            }
                        }
                    },
                }
            }
        }
    }

    /// One connection: join, catch up, then follow events until the connection ends. Returns
    /// how it ended and whether the join succeeded.
    async fn session(&mut self) -> (End, bool) {
        let (socket, join_ref) = match self.open().await {
            Ok(joined) => joined,
            Err(reason) => return (End::Lost(reason), false),
        };
        if self.events.send(FeedEvent::Subscribed).await.is_err() {
            return (End::Stop, true);
        }
        let joined = self.seq.joined();
        match self.step(joined, None).await {
            Ok(()) => (self.follow(socket, &join_ref).await, true),
            Err(end) => (end, true),
        }
    }

    /// Connects and joins the channel; the join's ref.
    async fn open(&mut self) -> Result<(RealtimeSocket, String), String> {
        let connect = RealtimeSocket::connect_via(
            self.api.transport(),
            &self.config.api_url,
            &self.config.apikey,
            self.config.vsn,
        );
        let mut socket = match tokio::time::timeout(self.config.join_timeout, connect).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Err(_) => return Err("connect: no answer in time".into()),
        };
        let join_ref = self.join(&mut socket).await?;
        Ok((socket, join_ref))
    }

    /// Follows a joined channel: frames, heartbeats (one unanswered by the next ends it) and
    /// commands, until the connection ends or the feed stops.
    async fn follow(&mut self, mut socket: RealtimeSocket, join_ref: &String) -> End {
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut pending_heartbeat: Option<String> = None;
        // When the last project event came (or the last idle catch-up ran).
        let mut heard = self.api.sources().now();
        loop {
            let outcome = tokio::select! {
                frame = socket.recv() => match frame {
                    Ok(Some(frame)) => {
                        if frame.topic == self.topic && frame.event == "broadcast" {
                            heard = self.api.sources().now();
                        }
                        self.on_frame(&frame, &mut pending_heartbeat).await
                    }
                    Ok(None) => Err(End::Lost("the server closed the connection".into())),
                    Err(e) => Err(End::Lost(e.to_string())),
                },
                _ = heartbeat.tick() => {
                    if pending_heartbeat.is_some() {
                        Err(End::Lost("heartbeat timeout".into()))
                    } else {
                        match socket.push_heartbeat().await {
                            Ok(msg_ref) => {
                                pending_heartbeat = Some(msg_ref);
                                let now = self.api.sources().now();
                                if now.saturating_duration_since(heard) >= self.config.idle_catch_up {
                                    heard = now;
                                    let idle = self.seq.idle();
                                    self.step(idle, None).await
                                } else {
                                    Ok(())
                                }
                            }
                            Err(e) => Err(End::Lost(e.to_string())),
                        }
                    }
                }
                command = self.commands.recv() => match command {
                    None => {
                        socket.close().await;
                        return End::Stop;
                    }
                    Some(command) => self.command(command, Some((&mut socket, join_ref))).await,
                },
            };
            if let Err(end) = outcome {
                return end;
            }
        }
    }

    /// One frame from the server: a heartbeat reply, a broadcast, or the channel's end.
    async fn on_frame(&mut self, frame: &Frame, pending_heartbeat: &mut Option<String>) -> Result<(), End> {
        if frame.topic == "phoenix" {
            if frame.event == "phx_reply" && frame.msg_ref.is_some() && frame.msg_ref == *pending_heartbeat {
                *pending_heartbeat = None;
            }
            return Ok(());
        }
        if frame.topic != self.topic {
            return Ok(());
        }
        match frame.event.as_str() {
            "broadcast" => self.on_broadcast(frame).await,
            "phx_close" => Err(End::Lost("the server closed the channel".into())),
            "system" if frame.payload.get("status").and_then(Value::as_str) == Some("error") => {
                let message = frame.payload.get("message").and_then(Value::as_str).unwrap_or("system error");
                Err(End::Lost(message.to_owned()))
            }
            _ => Ok(()),
        }
    }

    async fn join(&mut self, socket: &mut RealtimeSocket) -> Result<String, String> {
        let join_ref = socket
            .push_join(&self.topic, private_join_payload(&self.config.token))
            .await
            .map_err(|e| format!("join: {e}"))?;
        let reply = tokio::time::timeout(self.config.join_timeout, socket.await_reply(&join_ref))
            .await
            .map_err(|_| "join: no reply in time".to_owned())?
            .map_err(|e: RealtimeError| format!("join: {e}"))?
            .0;
        match reply.payload.get("status").and_then(Value::as_str) {
            Some("ok") => Ok(join_ref),
            _ => {
                let reason = reply.payload.pointer("/response/reason").and_then(Value::as_str).unwrap_or("refused");
                Err(format!("{JOIN_REFUSED}: {reason}"))
            }
        }
    }

    /// Handles a command; on a joined socket, pushes what the server must know.
    async fn command(&mut self, command: Command, joined: Option<(&mut RealtimeSocket, &String)>) -> Result<(), End> {
        match command {
            Command::SetToken(token) => {
                self.api.set_token(token.clone());
                crate::client::renew(&mut self.config.apikey, &mut self.config.token, &token);
                if let Some((socket, join_ref)) = joined {
                    let topic = self.topic.clone();
                    socket
                        .push(&topic, join_ref, "access_token", json!({"access_token": token}))
                        .await
                        .map_err(|e| End::Lost(e.to_string()))?;
                }
            }
            Command::SetBase(seq) => {
                if self.seq.set_base(seq) {
                    let _ = self.seq_tx.send(Some(seq));
                    if self.config.plant == Some(fsync_store::Plant::SkipBaseCatchUp) {
                        // Planted: claim to be caught up at the base without reading after it.
                        let _ = self.caught_tx.send(Some(seq));
                    } else if joined.is_some() {
                        self.catch_up(seq).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn on_broadcast(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(event_name) = frame.payload.get("event").and_then(Value::as_str) else { return Ok(()) };
        let payload = frame.payload.get("payload").unwrap_or(&Value::Null);
        let event = match ProjectEvent::parse(event_name, payload) {
            None => return Ok(()),
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                tracing::warn!(event = event_name, error = %e, "ignored a malformed project event");
                return Ok(());
            }
        };
        let written_at = parse_timestamp(event.timestamp());
        let step = self.seq.event(event);
        self.step(step, written_at).await
    }

    /// Does what the sequencer decided.
    async fn step(&mut self, step: Step, written_at: Option<Duration>) -> Result<(), End> {
        match step {
            Step::Nothing => Ok(()),
            Step::Apply { seq, changes } => self.deliver(seq, changes, ChangeSource::Live, written_at).await,
            Step::CatchUp { since } => self.catch_up(since).await,
        }
    }

    /// Fetches every change after `since` and delivers what is new as one batch.
    async fn catch_up(&mut self, since: i64) -> Result<(), End> {
        let answer = self
            .api
            .list_changes_since(self.config.project, since)
            .await
            .map_err(|e| End::Lost(format!("catch up from seq {since}: {e}")))?;
        let caught = self.seq.caught_up(answer);
        if let Some((seq, batch)) = caught.apply {
            self.deliver(seq, batch, ChangeSource::CatchUp, None).await?;
        }
        let _ = self.caught_tx.send(Some(caught.reached));
        Ok(())
    }

    /// Hands a batch the sequencer already counted to the consumer.
    async fn deliver(
        &mut self,
        seq: i64,
        changes: Vec<FileChange>,
        source: ChangeSource,
        written_at: Option<Duration>,
    ) -> Result<(), End> {
        self.events.send(FeedEvent::Changes { seq, changes, source, written_at }).await.map_err(|_| End::Stop)?;
        let _ = self.seq_tx.send(Some(seq));
        Ok(())
    }
}

//! One WebSocket connection: a reader that handles the client's frames (heartbeats, joins,
//! leaves, token refreshes, client broadcasts) and a writer that drains the socket's bounded
//! queue. Every reply and delivery goes through the queue, in order.

use super::hub::{session_stopped_message, KickReason, SocketId, SocketOut, Subscription};
use super::rate::TokenBucket;
use super::{verify_realtime_token, RealtimeAuth, RealtimeConfig};
use crate::metrics::Surface;
use crate::state::AppState;
use axum::extract::ws::{Message, WebSocket};
use fsync_protocol::events::ProjectEvent;
use fsync_protocol::jwt;
use fsync_protocol::realtime::{self as wire, Frame, Vsn};
use fsync_store::data::{RealtimeMessage, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long the writer waits on a stuck connection before giving up on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Private channels a socket has authorized again per round (`RealtimeConfig::reauthorize_every`).
const REAUTHORIZE_PER_ROUND: usize = 8;

/// A joined channel.
struct Channel {
    join_ref: Option<String>,
    private: bool,
    may_write: bool,
    ack: bool,
    auth: RealtimeAuth,
}

/// Joined channels by wire topic, shared with the writer so that it can close them all when the
/// socket is kicked.
type Joined = Arc<Mutex<BTreeMap<String, Option<String>>>>;

pub(super) async fn run<S: Store>(
    ws: WebSocket,
    state: AppState<S>,
    vsn: Vsn,
    connect: RealtimeAuth,
    config: RealtimeConfig,
) {
    let id = state.hub.next_socket_id();
    let (sink, stream) = ws.split();
    let (out, queue, kick) = SocketOut::new(config.queue_capacity);
    let joined: Joined = Arc::default();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    state.hub.register(id, out.clone());
    state.metrics.websockets(1);
    let writer = tokio::spawn(write_loop(sink, queue, kick, out.kick_reason(), joined.clone(), vsn, done_tx));
    let now = state.sources.now();
    let rates = Rates {
        messages: TokenBucket::new(config.messages_per_s, config.messages_per_s, now),
        joins: TokenBucket::new(config.joins_per_s, config.joins_per_s, now),
    };
    let channels = BTreeMap::new();
    let mut socket = Socket { id, vsn, state, config, connect, out, joined, channels, rates, reauthorized: 0 };
    socket.read_loop(stream, done_rx).await;
    // Dropping the socket forgets it in the hub (also if the reader panicked), which closes its
    // queue and so ends the writer.
    let metrics = socket.state.metrics.clone();
    drop(socket);
    let _ = writer.await;
    metrics.websockets(-1);
}

impl<S> Drop for Socket<S> {
    fn drop(&mut self) {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        self.state.hub.remove_socket(self.id, topics);
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut queue: tokio::sync::mpsc::Receiver<Arc<str>>,
    kick: Arc<tokio::sync::Notify>,
    reason: KickReason,
    joined: Joined,
    vsn: Vsn,
    done: tokio::sync::watch::Sender<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = kick.notified() => {
                // Too slow for its queue, or the server is going away: tell each channel why,
                // then hang up. The client reconnects and catches up by seq.
                let (status, message) = reason.get().unwrap_or(("error", "Disconnected".to_owned()));
                let channels: Vec<(String, Option<String>)> =
                    joined.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, j)| (t.clone(), j.clone())).collect();
                let mut frames: Vec<Frame> = channels
                    .iter()
                    .flat_map(|(topic, join_ref)| {
                        [wire::system(join_ref.clone(), topic, status, &message), wire::close(join_ref.clone(), topic)]
                    })
                    .collect();
                if frames.is_empty() {
                    frames.push(wire::system(None, "phoenix", status, &message));
                }
                for frame in frames {
                    let text = wire::encode(vsn, &frame);
                    if tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.into()))).await.is_err() {
                        break;
                    }
                }
                let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                break;
            }
            next = queue.recv() => match next {
                Some(text) => {
                    let sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.as_ref().into()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
                None => {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                    break;
                }
            },
        }
    }
    let _ = done.send(true);
}

struct Socket<S> {
    id: SocketId,
    vsn: Vsn,
    state: AppState<S>,
    config: RealtimeConfig,
    /// The connect-time apikey's identity: channels use it unless they bring their own token.
    connect: RealtimeAuth,
    out: SocketOut,
    joined: Joined,
    channels: BTreeMap<String, Channel>,
    rates: Rates,
    /// Where the next round of [`Socket::reauthorize`] starts among the private channels.
    reauthorized: usize,
}

/// What a socket may still send: frames, and joins among them.
struct Rates {
    messages: TokenBucket,
    joins: TokenBucket,
}

impl<S: Store> Socket<S> {
    async fn read_loop(
        &mut self,
        mut stream: futures_util::stream::SplitStream<WebSocket>,
        mut done: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut idle_deadline = self.state.sources.now() + self.config.idle_timeout;
        let mut reauthorize_at = self.state.sources.now() + self.config.reauthorize_every;
        loop {
            let expiry = self.next_expiry();
            tokio::select! {
                incoming = stream.next() => {
                    let Some(Ok(message)) = incoming else { return };
                    idle_deadline = self.state.sources.now() + self.config.idle_timeout;
                    match message {
                        Message::Text(text) => {
                            if text.len() > self.config.max_frame_bytes {
                                tracing::warn!(socket = self.id, bytes = text.len(), "dropped an oversized frame");
                                continue;
                            }
                            match wire::decode_text(self.vsn, text.as_str()) {
                                Ok(frame) => self.handle(frame).await,
                                Err(e) => tracing::warn!(socket = self.id, error = %e, "dropped a malformed frame"),
                            }
                        }
                        Message::Binary(bytes) => {
                            if self.vsn != Vsn::V2 || bytes.len() > self.config.max_frame_bytes {
                                tracing::warn!(socket = self.id, bytes = bytes.len(), "dropped a binary frame");
                                continue;
                            }
                            match wire::decode_binary(&bytes) {
                                Ok(frame) => self.handle(frame).await,
                                Err(e) => tracing::warn!(socket = self.id, error = %e, "dropped a binary frame"),
                            }
                        }
                        Message::Close(_) => return,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                    if self.out.is_kicked() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(idle_deadline) => {
                    tracing::debug!(socket = self.id, "idle timeout");
                    return;
                }
                _ = sleep_until_opt(expiry) => self.expire_channels(),
                _ = tokio::time::sleep_until(reauthorize_at) => {
                    self.reauthorize().await;
                    reauthorize_at = self.state.sources.now() + self.config.reauthorize_every;
                }
                _ = done.changed() => return,
            }
        }
    }

    fn send(&self, frame: &Frame) {
        self.out.push(Arc::from(wire::encode(self.vsn, frame)));
    }

    fn reply(&self, request: &Frame, status: &str, response: Value) {
        self.send(&wire::reply(request, status, response));
    }

    fn reply_error(&self, request: &Frame, reason: impl Into<String>) {
        if request.msg_ref.is_some() {
            self.reply(request, "error", json!({"reason": reason.into()}));
        }
    }

    async fn handle(&mut self, frame: Frame) {
        if !self.within_rates(&frame) {
            return;
        }
        match (frame.topic.as_str(), frame.event.as_str()) {
            ("phoenix", "heartbeat") => self.reply(&frame, "ok", json!({})),
            (_, "phx_join") => self.join(frame).await,
            // Phoenix answers a leave of a topic it does not know with ok, so a client can tear
            // down a channel whose join failed.
            (topic, "phx_leave") if !self.channels.contains_key(topic) => self.reply(&frame, "ok", json!({})),
            (topic, _) if !self.channels.contains_key(topic) => self.reply_error(&frame, "unmatched topic"),
            (_, "phx_leave") => {
                self.leave(&frame.topic);
                self.reply(&frame, "ok", json!({}));
                self.send(&wire::close(frame.join_ref.clone(), &frame.topic));
            }
            (_, "access_token") => self.refresh_token(frame).await,
            (_, "broadcast") => self.client_broadcast(frame).await,
            (_, "presence") => self.reply_error(&frame, "presence is not supported by the fsync reference server"),
            (_, event) => {
                let reason = format!("unknown event {event:?}");
                self.reply_error(&frame, reason);
            }
        }
    }

    /// Spends the frame's share of the socket's rates (heartbeats are free: a client must be able
    /// to stay connected); a frame beyond them is answered with an error and goes no further.
    fn within_rates(&mut self, frame: &Frame) -> bool {
        if frame.topic == "phoenix" && frame.event == "heartbeat" {
            return true;
        }
        let now = self.state.sources.now();
        if !self.rates.messages.take(now) {
            tracing::debug!(socket = self.id, topic = %frame.topic, "over the message rate");
            self.reply_error(frame, "RateLimitReached: too many messages per second");
            self.state.metrics.rate_limited(Surface::RealtimeMessages);
            return false;
        }
        if frame.event == "phx_join" && !self.rates.joins.take(now) {
            tracing::debug!(socket = self.id, topic = %frame.topic, "over the join rate");
            self.reply_error(frame, "ChannelRateLimitReached: too many joins per second");
            self.state.metrics.rate_limited(Surface::RealtimeJoins);
            self.state.metrics.join("rate_limited");
            return false;
        }
        true
    }

    /// Joins a channel, counting the outcome.
    async fn join(&mut self, frame: Frame) {
        let outcome = self.admit(frame).await;
        self.state.metrics.join(outcome);
    }

    /// Joins a channel or refuses with the reason; the outcome (`ok`, `invalid`, `denied`,
    /// `error`).
    async fn admit(&mut self, frame: Frame) -> &'static str {
        let Some(subtopic) = frame.topic.strip_prefix("realtime:") else {
            return self.refuse(&frame, "invalid", "unmatched topic");
        };
        if subtopic.is_empty() {
            return self.refuse(&frame, "invalid", "TopicNameRequired: You must provide a topic name");
        }
        if frame.topic.len() > self.config.max_topic_bytes {
            let limit = self.config.max_topic_bytes;
            return self.refuse(&frame, "invalid", format!("TopicNameTooLong: a topic has at most {limit} bytes"));
        }
        let subtopic = subtopic.to_owned();
        let config = frame.payload.get("config").cloned().unwrap_or(Value::Null);
        let private = flexible_bool(config.get("private"));
        let ack = flexible_bool(config.pointer("/broadcast/ack"));
        let receive_own = flexible_bool(config.pointer("/broadcast/self"));
        if config.get("postgres_changes").and_then(Value::as_array).is_some_and(|c| !c.is_empty()) {
            return self.refuse(
                &frame,
                "invalid",
                "PostgresChangesNotSupported: the fsync reference server delivers Broadcast only; subscribe to project:<uuid> broadcasts",
            );
        }
        if !self.channels.contains_key(&frame.topic) && self.channels.len() >= self.config.max_channels {
            return self.refuse(&frame, "invalid", "ChannelRateLimitReached: Too many channels");
        }
        let auth = match channel_token(&frame.payload) {
            Some(token) => match verify_realtime_token(&self.state.secret, token, self.state.sources.wall_s()) {
                Ok(auth) => auth,
                Err(message) => return self.refuse(&frame, "denied", format!("InvalidJWTToken: {message}")),
            },
            None => self.connect.clone(),
        };
        if auth.exp_s <= self.state.sources.wall_s() {
            return self.refuse(&frame, "denied", "InvalidJWTToken: Token has expired");
        }
        let mut may_write = !private;
        if private {
            let decision = self.state.store.authorize_topic(&auth.request, &subtopic).await;
            tracing::debug!(socket = self.id, topic = %frame.topic, role = %auth.request.role, ?decision, "join");
            match decision {
                Ok(access) if access.read => may_write = access.write,
                Ok(_) => {
                    return self.refuse(
                        &frame,
                        "denied",
                        format!(
                            "Unauthorized: You do not have permissions to read from this Channel topic: {subtopic}"
                        ),
                    )
                }
                Err(e) => {
                    tracing::error!(socket = self.id, error = %e.body.message, "channel authorization failed");
                    return self.refuse(&frame, "error", "Unknown Error on Channel");
                }
            }
        }
        // Joining a topic again replaces the earlier join.
        if let Some(old) = self.channels.remove(&frame.topic) {
            self.state.hub.unsubscribe(&frame.topic, self.id);
            self.send(&wire::close(old.join_ref, &frame.topic));
        }
        let reply = wire::encode(self.vsn, &wire::reply(&frame, "ok", json!({"postgres_changes": []})));
        let session = jwt::container_session(&auth.request.claims);
        let subscription =
            Subscription { socket: self.id, private, receive_own, vsn: self.vsn, out: self.out.clone(), session };
        if !self.state.hub.subscribe(&frame.topic, subscription, Arc::from(reply)) {
            // Authorized just before its session was stopped: the stop wins.
            let stopped = session.map(session_stopped_message).unwrap_or_default();
            return self.refuse(&frame, "denied", stopped);
        }
        self.joined_set().insert(frame.topic.clone(), frame.join_ref.clone());
        self.channels.insert(frame.topic, Channel { join_ref: frame.join_ref, private, may_write, ack, auth });
        "ok"
    }

    /// Refuses a join with `message`; `outcome` is what it counts as.
    fn refuse(&self, frame: &Frame, outcome: &'static str, message: impl Into<String>) -> &'static str {
        self.reply_error(frame, message);
        outcome
    }

    fn leave(&mut self, topic: &str) {
        self.channels.remove(topic);
        self.joined_set().remove(topic);
        self.state.hub.unsubscribe(topic, self.id);
    }

    /// Ends a channel with a `system` error and `phx_close`, as Supabase does.
    fn close_channel(&mut self, topic: &str, message: &str) {
        if let Some(channel) = self.channels.get(topic) {
            let join_ref = channel.join_ref.clone();
            self.send(&wire::system(join_ref.clone(), topic, "error", message));
            self.send(&wire::close(join_ref, topic));
        }
        self.leave(topic);
    }

    async fn refresh_token(&mut self, frame: Frame) {
        let Some(token) = frame.payload.get("access_token").and_then(Value::as_str) else { return };
        let Some(channel) = self.channels.get(&frame.topic) else { return };
        if token.starts_with("sb_") || token == channel.auth.token {
            return;
        }
        let auth = match verify_realtime_token(&self.state.secret, token, self.state.sources.wall_s()) {
            Ok(auth) => auth,
            Err(message) => return self.close_channel(&frame.topic, &message),
        };
        // The hub knows a channel by the session that joined it: a token of another session (or
        // none) is a new join, not a refresh.
        if jwt::container_session(&auth.request.claims) != jwt::container_session(&channel.auth.request.claims) {
            return self.close_channel(&frame.topic, "a refreshed token must belong to the session that joined");
        }
        let private = channel.private;
        let subtopic = frame.topic.trim_start_matches("realtime:").to_owned();
        let mut may_write = !private;
        if private {
            match self.state.store.authorize_topic(&auth.request, &subtopic).await {
                Ok(access) if access.read => may_write = access.write,
                Ok(_) => return self.close_channel(&frame.topic, &no_longer_readable(&subtopic)),
                Err(e) => {
                    tracing::error!(socket = self.id, error = %e.body.message, "channel re-authorization failed");
                    return self.close_channel(&frame.topic, "Unknown Error on Channel");
                }
            }
        }
        if let Some(channel) = self.channels.get_mut(&frame.topic) {
            channel.auth = auth;
            channel.may_write = may_write;
        }
    }

    async fn client_broadcast(&mut self, frame: Frame) {
        let Some(channel) = self.channels.get(&frame.topic) else { return };
        if !self.config.keep_client_broadcast {
            return self.reply_error(
                &frame,
                "ClientBroadcastDisabled: the server authors every event (FSYNC_KEEP_CLIENT_BROADCAST is off)",
            );
        }
        let event = frame.payload.get("event").and_then(Value::as_str);
        let (Some("broadcast"), Some(event)) = (frame.payload.get("type").and_then(Value::as_str), event) else {
            return self.reply_error(&frame, "a broadcast is {type: \"broadcast\", event, payload}");
        };
        // The server's own event names are not for clients: a forged file:update would be
        // applied by consumers as if the server had sent it.
        if ProjectEvent::is_server_event(event) {
            return self.reply_error(&frame, format!("ReservedEvent: {event} is sent by the server only"));
        }
        let payload_json = frame.payload.get("payload").cloned().unwrap_or(Value::Null).to_string();
        if payload_json.len() > self.config.max_frame_bytes {
            return self.reply(&frame, "error", json!({"error": "payload_size_exceeded"}));
        }
        if channel.private && !channel.may_write {
            let subtopic = frame.topic.trim_start_matches("realtime:");
            return self.reply_error(
                &frame,
                format!("Unauthorized: You do not have permissions to write to this Channel topic: {subtopic}"),
            );
        }
        let message = RealtimeMessage {
            id: self.state.sources.uuid().to_string(),
            topic: frame.topic.trim_start_matches("realtime:").to_owned(),
            event: event.to_owned(),
            payload_json,
            private: channel.private,
        };
        let (ack, auth) = (channel.ack, channel.auth.request.clone());
        self.state.hub.mark_sent(&message.id, self.id);
        match self.state.store.publish(&auth, &message).await {
            Ok(()) if ack => self.reply(&frame, "ok", json!({})),
            Ok(()) => {}
            Err(e) => {
                self.state.hub.unmark_sent(&message.id);
                self.reply_error(&frame, e.body.message);
            }
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        let exp = self.channels.values().map(|c| c.auth.exp_s).min()?;
        let now = self.state.sources.wall_s();
        // Wake at least daily: an absurd `exp` must not overflow the deadline.
        Some(self.state.sources.now() + Duration::from_secs(exp.saturating_sub(now).min(86_400)))
    }

    /// Asks the store again about the next [`REAUTHORIZE_PER_ROUND`] private channels (in turn,
    /// so a socket with many costs the store no more each round): one its token may no longer
    /// read (a member removed, a session stopped) is closed as a refused join would be answered.
    /// A store that cannot answer now leaves the channels as they are until the next time.
    async fn reauthorize(&mut self) {
        let count = self.channels.values().filter(|c| c.private).count();
        let start = self.reauthorized % count.max(1);
        self.reauthorized = (start + REAUTHORIZE_PER_ROUND) % count.max(1);
        let round: Vec<(String, fsync_store::RequestAuth)> = (self.channels.iter().filter(|(_, c)| c.private))
            .cycle()
            .skip(start)
            .take(REAUTHORIZE_PER_ROUND.min(count))
            .map(|(t, c)| (t.clone(), c.auth.request.clone()))
            .collect();
        for (topic, auth) in round {
            let subtopic = topic.strip_prefix("realtime:").unwrap_or(&topic).to_owned();
            match self.state.store.authorize_topic(&auth, &subtopic).await {
                Ok(access) if access.read => {
                    if let Some(channel) = self.channels.get_mut(&topic) {
                        channel.may_write = access.write;
                    }
                }
                Ok(_) => {
                    tracing::debug!(socket = self.id, %topic, "no longer authorized; closing the channel");
                    self.close_channel(&topic, &no_longer_readable(&subtopic));
                }
                Err(e) => {
                    tracing::warn!(socket = self.id, error = %e.body.message, "could not authorize a channel again")
                }
            }
        }
    }

    /// Closes every channel whose token has expired.
    fn expire_channels(&mut self) {
        let now = self.state.sources.wall_s();
        let expired: Vec<(String, u64)> =
            self.channels.iter().filter(|(_, c)| c.auth.exp_s <= now).map(|(t, c)| (t.clone(), c.auth.exp_s)).collect();
        for (topic, exp) in expired {
            let message = format!("Token has expired {} seconds ago", now.saturating_sub(exp));
            self.close_channel(&topic, &message);
        }
    }

    fn joined_set(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        self.joined.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a channel whose reader lost the right to read it is closed.
fn no_longer_readable(subtopic: &str) -> String {
    format!("You no longer have permission to read from this Channel topic: {subtopic}")
}

/// The token a join brings: `access_token` (or `user_token`), unless it is an `sb_` key.
fn channel_token(payload: &Value) -> Option<&str> {
    ["access_token", "user_token"]
        .iter()
        .find_map(|key| payload.get(*key).and_then(Value::as_str))
        .filter(|t| !t.is_empty() && !t.starts_with("sb_"))
}

/// Supabase's FlexibleBoolean: `true`, `"true"`, `1`.
fn flexible_bool(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

//! The fan-out: which socket listens on which topic, and delivery of each committed message to
//! them, in the order the store delivers messages (commit order).
//!
//! Delivery never waits on a socket: each socket has a bounded send queue, and a socket whose
//! queue is full is kicked (disconnected with a `system` message by its writer) instead of
//! stalling everyone else. It catches up by `seq` when it reconnects.

use crate::metrics::{Metrics, Stage};
use fsync_protocol::events::{payload_seq, payload_timestamp};
use fsync_protocol::realtime::{encode_broadcast, Vsn, SESSION_STOPPED};
use fsync_store::data::{Delivery, RealtimeMessage};
use fsync_store::sessions::SessionEnd;
use fsync_store::Clock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use uuid::Uuid;

/// How long the hub remembers who sent a client broadcast.
const SENT_BY_TTL: Duration = Duration::from_secs(60);

/// Identifies one WebSocket connection on this instance.
pub type SocketId = u64;

/// The sending half of a socket: its bounded queue of encoded frames and its kick switch.
#[derive(Clone)]
pub struct SocketOut {
    tx: mpsc::Sender<Arc<str>>,
    kicked: Arc<AtomicBool>,
    kick: Arc<Notify>,
    /// Why the socket was kicked: (`system` status, message).
    reason: Arc<Mutex<Option<(&'static str, String)>>>,
}

/// Why a socket was kicked, once it is.
pub struct KickReason(Arc<Mutex<Option<(&'static str, String)>>>);

impl KickReason {
    /// (`system` status, message).
    pub fn get(&self) -> Option<(&'static str, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the writer of a kicked socket tells the client.
pub fn slow_consumer_message(capacity: usize) -> String {
    format!("Disconnected: this client fell {capacity} messages behind; reconnect and catch up by seq")
}

impl SocketOut {
    pub fn new(capacity: usize) -> (SocketOut, mpsc::Receiver<Arc<str>>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let kick = Arc::new(Notify::new());
        let out =
            SocketOut { tx, kicked: Arc::new(AtomicBool::new(false)), kick: kick.clone(), reason: Arc::default() };
        (out, rx, kick)
    }

    /// Queues a frame; a full queue kicks the socket. Returns whether the frame was queued.
    pub fn push(&self, frame: Arc<str>) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick_out("error", slow_consumer_message(self.tx.max_capacity()));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Disconnects the socket: its writer sends a `system` message with `status` and `message`
    /// on every joined channel, then closes.
    pub fn kick_out(&self, status: &'static str, message: String) {
        if !self.kicked.swap(true, Ordering::SeqCst) {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some((status, message));
            self.kick.notify_one();
        }
    }

    /// Where the kick reason will be: the writer holds this, not the sender (holding a sender
    /// would keep the queue open after the reader is gone).
    pub fn kick_reason(&self) -> KickReason {
        KickReason(self.reason.clone())
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::SeqCst)
    }
}

/// One joined channel of one socket.
#[derive(Clone)]
pub struct Subscription {
    pub socket: SocketId,
    pub private: bool,
    /// `config.broadcast.self`: receive one's own client broadcasts.
    pub receive_own: bool,
    pub vsn: Vsn,
    pub out: SocketOut,
    /// The preview session whose container token joined it, if one did.
    pub session: Option<Uuid>,
}

/// What the orchestrator hears from the hub, in the order the store delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionNews {
    /// A live session's record ended; if the end revokes it, its channels are already closed.
    Ended(Uuid, SessionEnd),
    /// Ends may have been missed: read the records of the live sessions again.
    Resync,
}

/// What the agent of a stopped session is told as its channel closes.
pub fn session_stopped_message(session: Uuid) -> String {
    format!("{SESSION_STOPPED}: preview session {session} was stopped; its container token no longer works")
}

#[derive(Default)]
struct State {
    /// Wire topic (`realtime:...`) → socket → subscription.
    topics: BTreeMap<String, BTreeMap<SocketId, Subscription>>,
    /// Client broadcasts in flight: message id → the socket that sent it, and when.
    sent_by: HashMap<String, (SocketId, Instant)>,
    /// Every open socket.
    sockets: BTreeMap<SocketId, SocketOut>,
    /// The id the next socket gets (ids are the instance's own: a run never depends on another's).
    next_socket: SocketId,
    /// Sessions whose channels were ended, and when: a join authorized just before a stop (its
    /// authorization read the record before the stop committed) is refused when it subscribes
    /// after the end. Kept [`ENDED_KEPT`].
    ended: BTreeMap<Uuid, Instant>,
}

/// How long the hub remembers an ended session: longer than any container token lives.
const ENDED_KEPT: Duration = Duration::from_secs(fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S + 60);

/// The fan-out of one server instance.
pub struct Hub {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    /// Planted by the simulator: ignore the store's resync (`no-resync-after-listen-loss`).
    ignore_resync: bool,
    /// Where each event's commit → delivered lag goes.
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub; `clock` ages the memory of who sent what and times each event's lag.
    pub fn new(clock: Arc<dyn Clock>) -> Hub {
        Hub { state: Mutex::default(), clock, ignore_resync: false, metrics: Arc::default() }
    }

    /// The same hub, recording into `metrics`.
    pub fn measured(mut self, metrics: Arc<Metrics>) -> Hub {
        self.metrics = metrics;
        self
    }

    /// The same hub with a planted bug (the simulator's `--plant`).
    pub fn planted(mut self, plant: Option<fsync_store::Plant>) -> Hub {
        self.ignore_resync = plant == Some(fsync_store::Plant::NoResyncAfterListenLoss);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes, and under the same lock queues `reply` to the socket, so that no broadcast
    /// for the channel can reach the socket before the join's reply. A subscription of a session
    /// whose channels were ended is refused (`false`): its join was authorized before the stop.
    #[must_use]
    pub fn subscribe(&self, topic: &str, subscription: Subscription, reply: Arc<str>) -> bool {
        let mut state = self.lock();
        if subscription.session.is_some_and(|id| state.ended.contains_key(&id)) {
            return false;
        }
        subscription.out.push(reply);
        state.topics.entry(topic.to_owned()).or_default().insert(subscription.socket, subscription);
        true
    }

    pub fn unsubscribe(&self, topic: &str, socket: SocketId) {
        let mut state = self.lock();
        if let Some(subs) = state.topics.get_mut(topic) {
            subs.remove(&socket);
            if subs.is_empty() {
                state.topics.remove(topic);
            }
        }
    }

    /// An id for a new socket.
    pub fn next_socket_id(&self) -> SocketId {
        let mut state = self.lock();
        state.next_socket += 1;
        state.next_socket
    }

    /// Notes an open socket.
    pub fn register(&self, socket: SocketId, out: SocketOut) {
        self.lock().sockets.insert(socket, out);
    }

    /// Forgets a socket entirely (it disconnected).
    pub fn remove_socket(&self, socket: SocketId, topics: impl IntoIterator<Item = String>) {
        for topic in topics {
            self.unsubscribe(&topic, socket);
        }
        let mut state = self.lock();
        state.sent_by.retain(|_, (s, _)| *s != socket);
        state.sockets.remove(&socket);
    }

    /// Disconnects every socket, as Supabase does when a server goes away ("Server requested
    /// disconnect"); clients reconnect and catch up.
    pub fn close_all(&self) {
        for out in self.lock().sockets.values() {
            out.kick_out("ok", "Server requested disconnect".to_owned());
        }
    }

    /// Ends the channels session `id`'s container token joined, at once: nothing delivered after
    /// this reaches them, and each of their sockets is disconnected with a `system` error (a
    /// container's socket is its agent's alone). How many channels.
    pub fn end_session(&self, id: Uuid) -> usize {
        let mut state = self.lock();
        let now = self.clock.now();
        state.ended.retain(|_, at| now.saturating_duration_since(*at) < ENDED_KEPT);
        state.ended.insert(id, now);
        let mut ended = Vec::new();
        for subs in state.topics.values_mut() {
            subs.retain(|_, sub| {
                let of_session = sub.session == Some(id);
                if of_session {
                    ended.push(sub.out.clone());
                }
                !of_session
            });
        }
        state.topics.retain(|_, subs| !subs.is_empty());
        for out in &ended {
            out.kick_out("error", session_stopped_message(id));
        }
        ended.len()
    }

    /// Open sockets.
    pub fn sockets(&self) -> usize {
        self.lock().sockets.len()
    }

    /// Notes that `socket` is about to publish message `id` (for `config.broadcast.self`).
    /// Entries whose message never came back (a lost notification) are forgotten after a minute.
    pub fn mark_sent(&self, id: &str, socket: SocketId) {
        let mut state = self.lock();
        let now = self.clock.now();
        state.sent_by.retain(|_, (_, at)| now.duration_since(*at) < SENT_BY_TTL);
        state.sent_by.insert(id.to_owned(), (socket, now));
    }

    pub fn unmark_sent(&self, id: &str) {
        self.lock().sent_by.remove(id);
    }

    /// Delivers one message to every subscriber of its topic with the same privacy.
    pub fn fan_out(&self, message: &RealtimeMessage) -> usize {
        let topic = format!("realtime:{}", message.topic);
        let mut state = self.lock();
        let sender = state.sent_by.remove(&message.id).map(|(socket, _)| socket);
        let Some(subs) = state.topics.get(&topic) else { return 0 };
        let mut encoded: [Option<Arc<str>>; 2] = [None, None];
        let mut pushed = 0;
        for sub in subs.values() {
            if sub.private != message.private || (Some(sub.socket) == sender && !sub.receive_own) {
                continue;
            }
            let slot = &mut encoded[sub.vsn as usize];
            let frame = slot
                .get_or_insert_with(|| {
                    Arc::from(encode_broadcast(sub.vsn, &topic, &message.event, &message.payload_json, &message.id))
                })
                .clone();
            sub.out.push(frame);
            pushed += 1;
        }
        pushed
    }

    /// Feeds every message from the store to the sockets until the store's stream ends. When the
    /// store may have missed messages, every socket is disconnected so that its client rejoins
    /// and catches up by seq. A session's end closes its channels before anything committed
    /// after it is delivered, and goes on to `sessions` (the orchestrator), as resyncs do.
    pub async fn run(
        self: Arc<Self>,
        mut deliveries: mpsc::Receiver<Delivery>,
        sessions: Option<mpsc::UnboundedSender<SessionNews>>,
    ) {
        let tell = |news| {
            if let Some(sessions) = &sessions {
                let _ = sessions.send(news);
            }
        };
        while let Some(delivery) = deliveries.recv().await {
            match delivery {
                Delivery::SessionEnded { session, end } => {
                    if end.revokes() {
                        let channels = self.end_session(session);
                        tracing::info!(session_id = %session, channels, ?end, "session ended; its channels closed");
                    }
                    tell(SessionNews::Ended(session, end));
                }
                Delivery::Message(message) => {
                    let project = message.topic.strip_prefix("project:").unwrap_or(&message.topic);
                    let span = tracing::debug_span!(
                        "event",
                        project_id = %project,
                        event_type = %message.event,
                        seq = tracing::field::Empty
                    );
                    // The seq is read out of the payload only when someone logs at debug level.
                    if !span.is_disabled() {
                        span.record("seq", payload_seq(&message.payload_json));
                    }
                    let _entered = span.enter();
                    let sockets = self.fan_out(&message);
                    tracing::debug!(sockets, "delivered");
                    self.measure_lag(&message);
                }
                Delivery::Resync if self.ignore_resync => {}
                Delivery::Resync => {
                    self.metrics.resync();
                    self.close_all();
                    tell(SessionNews::Resync);
                }
            }
        }
    }

    /// Commit → delivered: from the event's `timestamp` (its write's transaction, by the
    /// database's clock) to now (by this instance's). Events without one are not counted.
    fn measure_lag(&self, message: &RealtimeMessage) {
        if let Some(written) = payload_timestamp(&message.payload_json) {
            let lag = self.clock.wall().saturating_sub(written);
            self.metrics.event_lag(Stage::Delivered, lag.as_secs_f64());
        }
    }

    /// How many sockets are subscribed to `topic` (wire topic).
    pub fn subscribers(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, id: &str, private: bool) -> RealtimeMessage {
        RealtimeMessage {
            id: id.into(),
            topic: topic.into(),
            event: "file:update".into(),
            payload_json: "{\"seq\":1}".into(),
            private,
        }
    }

    #[test]
    fn delivers_by_topic_and_privacy_and_kicks_a_full_queue() {
        let hub = Hub::new(Arc::new(fsync_store::SystemClock));
        let (fast, mut fast_rx, _) = SocketOut::new(8);
        let (slow, _slow_rx, slow_kick) = SocketOut::new(1);
        let (public, mut public_rx, _) = SocketOut::new(8);
        let sub = |socket, private, out: &SocketOut| Subscription {
            socket,
            private,
            receive_own: false,
            vsn: Vsn::V2,
            out: out.clone(),
            session: None,
        };
        assert!(hub.subscribe("realtime:project:a", sub(1, true, &fast), Arc::from("ok1")));
        assert!(hub.subscribe("realtime:project:a", sub(2, true, &slow), Arc::from("ok2")));
        assert!(hub.subscribe("realtime:project:a", sub(3, false, &public), Arc::from("ok3")));
        assert_eq!(&*fast_rx.try_recv().unwrap(), "ok1", "the join reply comes first");
        assert_eq!(&*public_rx.try_recv().unwrap(), "ok3");

        hub.fan_out(&message("project:a", "m1", true));
        hub.fan_out(&message("project:b", "m2", true));
        let delivered = fast_rx.try_recv().unwrap();
        assert!(delivered.contains("\"m1\""));
        assert!(fast_rx.try_recv().is_err(), "nothing from another topic");
        assert!(public_rx.try_recv().is_err(), "a private message does not reach a public channel");
        assert!(slow.is_kicked(), "the slow socket's one-slot queue held the join reply");
        drop(slow_kick);
    }

    #[test]
    fn a_sender_does_not_receive_its_own_broadcast_unless_it_asked() {
        let hub = Hub::new(Arc::new(fsync_store::SystemClock));
        let (me, mut me_rx, _) = SocketOut::new(8);
        let (echo, mut echo_rx, _) = SocketOut::new(8);
        assert!(hub.subscribe(
            "realtime:r",
            Subscription { socket: 1, private: false, receive_own: false, vsn: Vsn::V1, out: me, session: None },
            Arc::from("ok"),
        ));
        assert!(hub.subscribe(
            "realtime:r",
            Subscription { socket: 2, private: false, receive_own: true, vsn: Vsn::V2, out: echo, session: None },
            Arc::from("ok"),
        ));
        let _ = (me_rx.try_recv(), echo_rx.try_recv());
        hub.mark_sent("x", 1);
        hub.fan_out(&message("r", "x", false));
        assert!(me_rx.try_recv().is_err());
        assert!(echo_rx.try_recv().is_ok());
        hub.mark_sent("y", 2);
        hub.fan_out(&message("r", "y", false));
        assert!(me_rx.try_recv().is_ok());
        assert!(echo_rx.try_recv().is_ok(), "self: true receives its own");
    }

    #[test]
    fn a_sessions_end_closes_its_channels_before_anything_later_is_delivered() {
        let hub = Hub::new(Arc::new(fsync_store::SystemClock));
        let session = Uuid::from_u128(7);
        let (agent, mut agent_rx, _agent_kick) = SocketOut::new(8);
        let (member, mut member_rx, _) = SocketOut::new(8);
        let sub = |socket, out: &SocketOut, session| Subscription {
            socket,
            private: true,
            receive_own: false,
            vsn: Vsn::V2,
            out: out.clone(),
            session,
        };
        assert!(hub.subscribe("realtime:project:a", sub(1, &agent, Some(session)), Arc::from("ok1")));
        assert!(hub.subscribe("realtime:project:a", sub(2, &member, None), Arc::from("ok2")));
        let _ = (agent_rx.try_recv(), member_rx.try_recv());
        assert_eq!(hub.end_session(Uuid::from_u128(8)), 0, "another session's end touches nothing");
        assert_eq!(hub.end_session(session), 1);
        assert!(agent.is_kicked(), "its socket is told and disconnected");
        let reason = agent.kick_reason().get().expect("a reason");
        assert_eq!(reason, ("error", session_stopped_message(session)));
        hub.fan_out(&message("project:a", "m1", true));
        assert!(agent_rx.try_recv().is_err(), "nothing after the end reaches it");
        assert!(member_rx.try_recv().is_ok(), "a member's channel goes on");
        assert_eq!(hub.subscribers("realtime:project:a"), 1);
        // A join authorized before the stop (its authorization read the record first) that
        // subscribes after the end is refused, and hears nothing.
        let (late, mut late_rx, _) = SocketOut::new(8);
        assert!(!hub.subscribe("realtime:project:a", sub(3, &late, Some(session)), Arc::from("ok3")));
        hub.fan_out(&message("project:a", "m2", true));
        assert!(late_rx.try_recv().is_err(), "no reply and no event");
        assert_eq!(hub.subscribers("realtime:project:a"), 1);
    }
}

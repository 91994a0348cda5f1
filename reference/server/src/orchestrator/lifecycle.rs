//! A session's life once started (DESIGN §9, issue 21): what the records say and what its agent
//! reports.
//!
//! - **A stop made anywhere is known here at once.** The records notify every instance when a
//!   live session ends (`0010_session_lifecycle.sql`); the hub closes the session's channels in
//!   commit order and passes the news on ([`SessionNews`]), and the instance that runs the
//!   session takes the record's word and wakes its watcher, which stops the agent. After a
//!   resync (the store's feed was lost, so ends may have been missed) every live session's
//!   record is read again. No poll.
//! - **A running session whose agent stopped following reads `behind`**: its agent reports every
//!   [`AGENT_REPORT_EVERY_MS`] while it follows (with whether its realtime feed is joined); after
//!   [`AGENT_SILENT_AFTER_S`] without a report, or on a report that its feed is down, the session
//!   is `behind`, and `running` again on the next report that it follows.

use super::registry::Orchestrator;
use crate::realtime::hub::SessionNews;
use fsync_protocol::snapshot::{SessionStatus, AGENT_REPORT_EVERY_MS, AGENT_SILENT_AFTER_S};
use fsync_store::sessions::{SessionEnd, PROJECT_DELETED};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long a running session's agent may be silent before the session reads `behind`.
pub const AGENT_SILENT_AFTER: Duration = Duration::from_secs(AGENT_SILENT_AFTER_S);
/// How often a watcher looks whether its agent went silent.
pub(super) const SILENCE_CHECK_EVERY: Duration = Duration::from_millis(AGENT_REPORT_EVERY_MS);

/// Why a session is behind when its agent says its feed is down.
pub const FEED_DOWN: &str = "the agent's realtime feed is down; it reconnects and catches up";

/// Why a session is behind when its agent has been silent.
pub fn silent_for(seconds: u64) -> String {
    format!("the agent has not reported for {seconds} s")
}

impl Orchestrator {
    /// Takes in the news the hub passes on, until the hub stops.
    pub async fn follow_news(&self, mut news: mpsc::UnboundedReceiver<SessionNews>) {
        while let Some(item) = news.recv().await {
            match item {
                SessionNews::Ended(id, end) => self.ended_elsewhere(id, end).await,
                SessionNews::Resync => {
                    let live: Vec<Uuid> = self.live_ids();
                    for id in live {
                        if self.stopped_elsewhere(id).await {
                            self.wake(id);
                        }
                    }
                }
            }
        }
    }

    /// A live session's record ended: if it is live here, it ends here too, and its watcher
    /// stops its agent when it was stopped.
    async fn ended_elsewhere(&self, id: Uuid, end: SessionEnd) {
        let live_here = self.with(id, |s| !s.view.status.is_final()).unwrap_or(false);
        if !live_here {
            return;
        }
        match end {
            // The record went with its project: there is nothing to read.
            SessionEnd::Deleted => self.set_status(id, SessionStatus::Stopped, Some(PROJECT_DELETED.to_owned())),
            // The record's word, with its reason; a stop stands even if the record cannot be
            // read now.
            SessionEnd::Stopped => {
                if !self.stopped_elsewhere(id).await {
                    self.set_status(id, SessionStatus::Stopped, None);
                    self.persist(id).await;
                }
            }
            SessionEnd::Failed => {
                self.stopped_elsewhere(id).await;
            }
        }
        tracing::info!(session_id = %id, ?end, "the session's record ended");
        self.wake(id);
    }

    /// Wakes session `id`'s watcher.
    fn wake(&self, id: Uuid) {
        self.with(id, |s| s.stop.notify_one());
    }

    /// The sessions live here.
    fn live_ids(&self) -> Vec<Uuid> {
        self.lock().iter().filter(|(_, s)| !s.view.status.is_final()).map(|(id, _)| *id).collect()
    }

    /// An agent's report: it is alive, and follows the project or not. A running session whose
    /// agent's feed is down reads `behind`, a behind one whose agent follows again `running`.
    pub(super) async fn note_report(&self, id: Uuid, following: bool) {
        let now = self.sources.now();
        let change = self
            .with(id, |s| {
                s.reported = Some((now, following));
                match (s.view.status, following) {
                    (SessionStatus::Running, false) => Some((SessionStatus::Behind, Some(FEED_DOWN.to_owned()))),
                    (SessionStatus::Behind, true) => Some((SessionStatus::Running, None)),
                    _ => None,
                }
            })
            .flatten();
        if let Some((status, reason)) = change {
            self.follows(id, status, reason).await;
        }
    }

    /// A running session whose agent has been silent for [`AGENT_SILENT_AFTER`] reads `behind`.
    pub(super) async fn check_silence(&self, id: Uuid) {
        let now = self.sources.now();
        let silent = self
            .with(id, |s| {
                let (at, _) = s.reported?;
                let silent = now.saturating_duration_since(at);
                (s.view.status == SessionStatus::Running && silent >= AGENT_SILENT_AFTER).then_some(silent)
            })
            .flatten();
        if let Some(silent) = silent {
            tracing::warn!(session_id = %id, silent_s = silent.as_secs(), "the agent went silent; the session is behind");
            self.follows(id, SessionStatus::Behind, Some(silent_for(silent.as_secs()))).await;
        }
    }

    /// Moves a live session between `running` and `behind` (a reason goes with `running`, unless
    /// one is given).
    pub(super) async fn follows(&self, id: Uuid, status: SessionStatus, reason: Option<String>) {
        if reason.is_none() {
            self.with(id, |s| {
                if !s.view.status.is_final() {
                    s.view.reason = None;
                }
            });
        }
        self.update(id, status, reason).await;
    }
}

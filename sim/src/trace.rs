//! What a run did, in order: every host's notes, the messages between hosts, the faults and the
//! violations. [`Trace::lines`] is the readable trace, [`Trace::hash`] shows that a seed gives the
//! same run, and [`crate::html`] draws [`Trace::events`] as a page.

use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What kind of thing an event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Something a host did or saw.
    Note,
    /// A message from the event's lane to another, sent at `sent` (it arrived at the event's time).
    Message { to: String, sent: Duration },
    /// A fault began; it touches `lanes` (every lane when empty).
    Fault { lanes: Vec<String> },
    /// A fault ended.
    Healed,
    /// An invariant did not hold.
    Violation,
}

/// One event of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: Duration,
    /// The host it happened on (or `world` for the fault schedule).
    pub lane: String,
    pub mark: Mark,
    pub text: String,
}

impl Event {
    /// The event as a line of the readable trace.
    pub fn line(&self) -> String {
        let what = match &self.mark {
            Mark::Note => format!("{}: {}", self.lane, self.text),
            Mark::Message { to, .. } => format!("{} → {to}: {}", self.lane, self.text),
            Mark::Fault { .. } => format!("fault: {}", self.text),
            Mark::Healed => format!("healed: {}", self.text),
            Mark::Violation => format!("VIOLATION {}", self.text),
        };
        format!("{:>9.3}s {what}", self.at.as_secs_f64())
    }
}

/// Events noted by every host, in the order the simulation ran them.
#[derive(Clone, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Trace {
    /// Notes `text` on `lane`, from inside a host (stamped with the simulated time).
    pub fn note(&self, lane: &str, text: impl Into<String>) {
        self.push(now(), lane, Mark::Note, text.into());
    }

    /// Notes a message from `from` to `to` that was sent at `sent` and arrived now.
    pub fn message(&self, from: &str, to: &str, sent: Duration, text: impl Into<String>) {
        self.push(now(), from, Mark::Message { to: to.to_owned(), sent }, text.into());
    }

    /// Notes that an invariant did not hold, seen from `lane`.
    pub fn violation(&self, lane: &str, text: impl Into<String>) {
        self.push(now(), lane, Mark::Violation, text.into());
    }

    /// Notes a fault of the schedule at `at` (from outside the hosts), touching `lanes`.
    pub fn fault(&self, at: Duration, lanes: Vec<String>, text: impl Into<String>) {
        self.push(at, "world", Mark::Fault { lanes }, text.into());
    }

    /// Notes that a fault ended at `at`.
    pub fn healed(&self, at: Duration, text: impl Into<String>) {
        self.push(at, "world", Mark::Healed, text.into());
    }

    fn push(&self, at: Duration, lane: &str, mark: Mark, text: String) {
        let event = Event { at, lane: lane.to_owned(), mark, text };
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.events().iter().map(Event::line).collect()
    }

    /// The SHA-256 of every line.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for line in self.lines() {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        fsync_protocol::hash::to_hex(&hasher.finalize())
    }
}

/// The simulated time inside a host.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

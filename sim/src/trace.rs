//! What a run did, in order, as a person reads it; its hash shows that a seed gives the same run.

use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// Lines noted by every host, in the order the simulation ran them.
#[derive(Clone, Default)]
pub struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    /// Notes `line` from inside a host, stamped with the simulated time.
    pub fn note(&self, line: impl Into<String>) {
        self.note_at(turmoil::sim_elapsed().unwrap_or_default(), line);
    }

    /// Notes `line` at simulated time `at` (from outside the hosts: the fault schedule).
    pub fn note_at(&self, at: std::time::Duration, line: impl Into<String>) {
        let line = format!("{:>9.3}s {}", at.as_secs_f64(), line.into());
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

//! The load test measures real time: every reading goes through the system clock of
//! `fsync-store` (the one place allowed to read it).

use fsync_store::{Clock, SystemClock};
use tokio::time::Instant;

pub fn now() -> Instant {
    SystemClock.now()
}

/// Milliseconds since `start`.
pub fn ms_since(start: Instant) -> f64 {
    now().saturating_duration_since(start).as_secs_f64() * 1e3
}

/// Seconds since the epoch (token times).
pub fn wall_s() -> u64 {
    SystemClock.wall_s()
}

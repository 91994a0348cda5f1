//! Where time comes from (DESIGN §13): wall seconds for tokens and expiries, monotonic instants
//! for timeouts and timings. Nothing outside the implementations here reads the system clock
//! (`clippy.toml` refuses `SystemTime::now` and `Instant::now` everywhere else).

use std::fmt;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// A source of time.
pub trait Clock: Send + Sync + 'static {
    /// Time since the Unix epoch, to the clock's precision: event lags, timestamps.
    fn wall(&self) -> Duration;
    /// Seconds since the Unix epoch: token `iat`/`exp`, expiries, signed URLs.
    fn wall_s(&self) -> u64 {
        self.wall().as_secs()
    }
    /// A monotonic instant: deadlines, timeouts, durations.
    fn now(&self) -> Instant;
}

/// The system's clock: production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[allow(clippy::disallowed_methods)] // the one place the system clock is read
impl Clock for SystemClock {
    fn wall(&self) -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that starts at a chosen epoch and moves with tokio's clock, so it is deterministic
/// wherever tokio's clock is: in a runtime with paused time (`start_paused`, `time::advance`), or
/// in a simulation that drives it.
#[derive(Clone, Copy)]
pub struct TokioClock {
    epoch_s: u64,
    start: Instant,
}

impl TokioClock {
    /// Wall time `epoch_s` now; it advances as tokio's clock does.
    #[allow(clippy::disallowed_methods)] // tokio's clock is the simulated one here
    pub fn starting_at(epoch_s: u64) -> TokioClock {
        TokioClock { epoch_s, start: Instant::now() }
    }
}

impl fmt::Debug for TokioClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioClock").field("epoch_s", &self.epoch_s).finish()
    }
}

#[allow(clippy::disallowed_methods)] // tokio's clock is the simulated one here
impl Clock for TokioClock {
    fn wall(&self) -> Duration {
        Duration::from_secs(self.epoch_s) + Instant::now().duration_since(self.start)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let clock = TokioClock::starting_at(1_700_000_000);
        let start = clock.now();
        assert_eq!(clock.wall_s(), 1_700_000_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.wall_s(), 1_700_000_090);
        assert_eq!(clock.now() - start, Duration::from_secs(90));
    }

    #[test]
    fn the_system_clock_is_past_2023() {
        assert!(SystemClock.wall_s() > 1_700_000_000);
    }
}

//! Simulated time and ids: wall seconds from turmoil's clock (the same on every host), monotonic
//! instants from each host's paused tokio clock, ids from the seed, blocking work inline.

use fsync_store::{Blocking, Clock, SeededIds, Sources};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The wall clock of the simulation: its epoch plus turmoil's elapsed time.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    pub epoch_s: u64,
}

impl Clock for SimClock {
    fn wall(&self) -> Duration {
        Duration::from_secs(self.epoch_s) + turmoil::sim_elapsed().unwrap_or_default()
    }

    #[allow(clippy::disallowed_methods)] // a host's tokio clock is turmoil's simulated one
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The simulation's start, in seconds since the Unix epoch (fixed: the same seed, the same run).
pub const EPOCH_S: u64 = 1_800_000_000;

/// Sources for one component of the world: its own id stream from `seed` and `component`, so
/// components cannot reorder each other's draws.
pub fn sources(seed: u64, component: u64) -> Sources {
    let stream = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(component.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    Sources {
        clock: Arc::new(SimClock { epoch_s: EPOCH_S }),
        ids: Arc::new(SeededIds::new(stream)),
        blocking: Blocking::Inline,
    }
}

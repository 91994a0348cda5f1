//! The ports of fsync (DESIGN §2, floor 2): what the server, the model, the client and the
//! agent agree on without knowing each other's insides.
//!
//! - [`data::Store`]: the source of truth as the HTTP surface sees it (RPCs, reads, Realtime
//!   topic authorization and deliveries), implemented by PostgreSQL and by the in-memory model;
//! - [`caller::RequestAuth`]: who is calling;
//! - [`error::ApiError`]: an error in PostgREST's shape, with its cause;
//! - [`platform::PlatformStore`]: snapshot reads, storage object rows, membership, session and
//!   snapshot records, for Storage, the snapshot function and the orchestrator;
//! - [`launch::Launcher`]: how the orchestrator starts agents (processes, or in-process tasks);
//! - [`clock::Clock`] and [`ids::Ids`], bundled as [`Sources`]: where time and ids come from.

pub mod caller;
pub mod clock;
pub mod data;
pub mod error;
pub mod ids;
pub mod launch;
pub mod plant;
pub mod platform;
pub mod query;
pub mod sessions;
pub mod snapshots;

pub use caller::RequestAuth;
pub use clock::{Clock, SystemClock, TokioClock};
pub use data::Store;
pub use error::{ApiError, StatusCode};
pub use ids::{Ids, SeededIds, SystemIds};
pub use plant::Plant;

use std::fmt;
use std::sync::Arc;

/// Where blocking work (zip writing, extraction, file I/O) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// On tokio's blocking threads: production.
    Threads,
    /// Inline on the calling task: simulated runs, where a thread would let real time leak in
    /// (DESIGN §13: no threads on simulated paths).
    Inline,
}

/// Where a component takes time and ids from, and where it runs blocking work: the system in
/// production, a seeded source, a driven clock and inline work in tests and the simulator.
#[derive(Clone)]
pub struct Sources {
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub blocking: Blocking,
}

impl Sources {
    /// The system clock, operating-system randomness, blocking work on threads.
    pub fn system() -> Sources {
        Sources { clock: Arc::new(SystemClock), ids: Arc::new(SystemIds), blocking: Blocking::Threads }
    }

    /// Ids from `seed`, a clock at `epoch_s` that moves with tokio's, blocking work inline: the
    /// same run twice gives the same ids and timestamps.
    pub fn seeded(seed: u64, epoch_s: u64) -> Sources {
        Sources {
            clock: Arc::new(TokioClock::starting_at(epoch_s)),
            ids: Arc::new(SeededIds::new(seed)),
            blocking: Blocking::Inline,
        }
    }

    /// The same clock and blocking policy with ids from `seed` (one seeded stream per component,
    /// so concurrent components cannot reorder each other's draws).
    pub fn with_seed(&self, seed: u64) -> Sources {
        Sources { ids: Arc::new(SeededIds::new(seed)), ..self.clone() }
    }

    /// Runs blocking `work` where this policy says; a panic in it is an error.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        match self.blocking {
            Blocking::Inline => Ok(work()),
            Blocking::Threads => tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other),
        }
    }

    /// Time since the epoch by this clock.
    pub fn wall(&self) -> std::time::Duration {
        self.clock.wall()
    }

    /// Seconds since the epoch by this clock.
    pub fn wall_s(&self) -> u64 {
        self.clock.wall_s()
    }

    /// Now, by this clock.
    pub fn now(&self) -> tokio::time::Instant {
        self.clock.now()
    }

    /// A fresh uuid from this source.
    pub fn uuid(&self) -> uuid::Uuid {
        self.ids.uuid()
    }
}

impl Default for Sources {
    fn default() -> Sources {
        Sources::system()
    }
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources").field("blocking", &self.blocking).finish_non_exhaustive()
    }
}

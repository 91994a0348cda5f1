//! Test support shared by every crate's integration tests: a fresh PostgreSQL database per test
//! ([`TestDb`]) and the reference server spawned on port 0 against it ([`spawn_app`]).
//!
//! The machine's PostgreSQL is used (`FSYNC_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, a superuser connection). Migrated databases are
//! cloned from a template built once per migration checksum, which keeps a fresh database per
//! test cheap. `TEST_LOG=1` switches server logs on. [`MemoryNet`] joins servers and clients
//! with in-process streams instead of sockets; [`FaultProxy`] sits between two parts of the real
//! stack and cuts, resets, delays, throttles or blackholes their connections. [`containers`] runs
//! the images `ci/images/build` made (PostgreSQL in a container), or says why it cannot here;
//! [`prometheus`] runs a real Prometheus that scrapes a test's servers.

mod app;
pub mod containers;
mod db;
pub mod memnet;
pub mod preview;
pub mod prometheus;
pub mod proxy;

pub use app::{claims, metric, spawn_app, AppOptions, PlatformOptions, TestApp};
pub use db::{admin_url, TestDb};
pub use memnet::MemoryNet;
pub use proxy::{Fault, FaultProxy};

use fsync_store::{Clock, Ids, SystemClock, SystemIds};

/// Now, in seconds since the epoch: tests on the real stack run on the system clock.
pub fn now_s() -> u64 {
    SystemClock.wall_s()
}

/// Now, as a monotonic instant (deadlines in tests on the real stack).
pub fn now() -> tokio::time::Instant {
    SystemClock.now()
}

/// A fresh random uuid (users, projects and database names in tests on the real stack).
pub fn new_id() -> uuid::Uuid {
    SystemIds.uuid()
}

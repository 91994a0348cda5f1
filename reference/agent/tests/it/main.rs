//! The agent's tests: convergence of the feed and `ProjectDir`, and end-to-end preview sessions
//! through the real server, PostgreSQL, storage and spawned `fsync-agent` processes.

mod convergence;
mod durable;
mod failures;
mod lifecycle;
mod on_model;
mod preview;
mod sessions;
mod support;

//! The preview container's agent (DESIGN §9): hydrate a project directory from its snapshot,
//! then apply every change as it comes.
//!
//! [`apply::ProjectDir`] applies batches atomically; [`extract`] checks and extracts snapshot
//! zips; [`session`] is the agent's life from join to shutdown (its HTTP calls in `api`,
//! hydration in `hydrate`, following in `follow`, the dev server in [`exec`]);
//! [`launcher::InProcessLauncher`] runs it as a
//! task for the orchestrator; [`process::main`] runs it as a process (the `fsync-agent` binary).

mod api;
pub mod apply;
pub mod config;
pub mod exec;
pub mod extract;
mod follow;
mod hydrate;
pub mod launcher;
pub mod process;
mod seekbuf;
pub mod session;

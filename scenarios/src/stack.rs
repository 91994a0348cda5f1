//! What a case needs from a stack, and nothing more: where each server answers, whose clock
//! tokens and deadlines use, the launcher that can hold agents, and the three things only a
//! stack can do to its world — cut and heal the agents' links, and restart its servers with
//! other flags. Everything else a case does goes through the public API, the same on both stacks.

use crate::case::Flags;
use crate::hold::HeldLauncher;
use fsync_client::Api;
use fsync_store::Clock;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub trait Stack {
    /// `sim` or `real` (never shown in a transcript: both must write the same one).
    fn name(&self) -> &'static str;

    /// The API of server `n` (0-based) as the case's people reach it.
    fn api(&self, n: usize) -> Api;

    /// Time for tokens and deadlines (simulated, or the system's).
    fn clock(&self) -> Arc<dyn Clock>;

    /// Every server's launcher (holds apply to all).
    fn launcher(&self) -> &HeldLauncher;

    /// How long a case may wait for something to settle, in this stack's time.
    fn patience(&self) -> Duration;

    /// Cuts (`true`) or heals every agent's connections to every server.
    fn cut_agents(&mut self, cut: bool) -> impl Future<Output = Result<(), String>>;

    /// Stops every server (their sessions end) and starts them again with `flags` on the same
    /// database and storage.
    fn restart(&mut self, flags: Flags) -> impl Future<Output = Result<(), String>>;
}

//! What a case needs from a stack, and nothing more: where each server answers, whose clock
//! tokens and deadlines use, the launcher that can hold agents (where the stack has one in
//! reach), and the things only a stack can do to its world — cut and heal the agents' links, and
//! restart its servers with other flags. Everything else a case does goes through the public
//! API, the same on every stack.

use crate::case::Flags;
use crate::hold::HeldLauncher;
use fsync_client::Api;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::SessionView;
use fsync_store::Clock;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub trait Stack {
    /// `sim`, `real` or `containers` (never shown in a transcript: all must write the same one).
    fn name(&self) -> &'static str;

    /// The API of server `n` (0-based) as the case's people reach it.
    fn api(&self, n: usize) -> Api;

    /// Time for tokens and deadlines (simulated, or the system's).
    fn clock(&self) -> Arc<dyn Clock>;

    /// Every server's launcher (holds apply to all); `None` where the servers run out of the
    /// case's reach (in containers), so that agents cannot be held, deafened or watched.
    fn launcher(&self) -> Option<&HeldLauncher>;

    /// The files session `view`'s agent holds, path → content hash: by default, its project
    /// directory as the session's view names it, on this machine.
    fn agent_tree(&self, view: &SessionView) -> Result<BTreeMap<String, String>, String> {
        let files = fsync_agent::apply::read_tree(Path::new(&view.project_dir))
            .map_err(|e| format!("read {}: {e}", view.project_dir))?;
        Ok(files.into_iter().map(|(path, bytes)| (path, hex_sha256(&bytes))).collect())
    }

    /// How long a case may wait for something to settle, in this stack's time.
    fn patience(&self) -> Duration;

    /// Cuts (`true`) or heals every agent's connections to every server.
    fn cut_agents(&mut self, cut: bool) -> impl Future<Output = Result<(), String>>;

    /// Stops every server (their sessions end) and starts them again with `flags` on the same
    /// database and storage.
    fn restart(&mut self, flags: Flags) -> impl Future<Output = Result<(), String>>;
}

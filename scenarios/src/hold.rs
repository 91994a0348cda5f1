//! A launcher that can hold launches, deafen agents, and remembers how each agent ended.
//!
//! - Held: the orchestrator has built the snapshot and asked for an agent, and the agent is not
//!   started until the case says `release` — so a case can write between a snapshot's build and
//!   its agent's join on both stacks alike.
//! - Deaf: the agent never hears the orchestrator's stop (a container the orchestrator cannot
//!   reach), so only what the network tells it can end it.
//! - Gone: when an agent ends, the tree of its project directory (path → content hash) is kept
//!   for its session, read before the orchestrator removes the directory.

use fsync_protocol::hash::hex_sha256;
use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

/// Path → content hash.
pub type Tree = BTreeMap<String, String>;

/// Wraps the stack's own launcher (processes, or simulated agent hosts).
#[derive(Clone)]
pub struct HeldLauncher {
    inner: Arc<dyn Launcher>,
    open: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
    /// Whether the next launch is deaf.
    deaf: Arc<AtomicBool>,
    /// The tree each session's agent held when it ended (or why it could not be read).
    gone: Arc<Mutex<BTreeMap<Uuid, Result<Tree, String>>>>,
}

impl HeldLauncher {
    /// Launches pass straight through until [`HeldLauncher::hold`].
    pub fn new(inner: Arc<dyn Launcher>) -> HeldLauncher {
        HeldLauncher {
            inner,
            open: watch::Sender::new(true),
            waiting: Arc::default(),
            deaf: Arc::default(),
            gone: Arc::default(),
        }
    }

    /// Launches from now on wait for [`HeldLauncher::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets every held launch go, and every later one.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Launches waiting for a release.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The next launch's agent never hears a stop or a kill.
    pub fn deafen_next(&self) {
        self.deaf.store(true, Ordering::SeqCst);
    }

    /// The tree session `id`'s agent held when it ended, once it has.
    pub fn gone(&self, id: Uuid) -> Option<Result<Tree, String>> {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }
}

impl Launcher for HeldLauncher {
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, Box<dyn Error + Send + Sync>>> {
        let mut open = self.open.subscribe();
        Box::pin(async move {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // The sender lives as long as `self`, so waiting cannot fail while a launch is asked for.
            let _ = open.wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let deaf = self.deaf.swap(false, Ordering::SeqCst);
            let (session, dir) = (launch.session_id, launch.project_dir.clone());
            let mut launched = self.inner.launch(launch).await?;
            if deaf {
                launched.control = Box::new(Deaf);
            }
            let gone = self.gone.clone();
            let exit = launched.exit;
            launched.exit = Box::pin(async move {
                let exit: AgentExit = exit.await;
                let tree = fsync_agent::apply::read_tree(&dir)
                    .map(|files| files.into_iter().map(|(path, bytes)| (path, hex_sha256(&bytes))).collect())
                    .map_err(|e| format!("read {}: {e}", dir.display()));
                gone.lock().unwrap_or_else(|e| e.into_inner()).insert(session, tree);
                exit
            });
            Ok(launched)
        })
    }

    fn describe(&self) -> String {
        format!("{} (launches can be held)", self.inner.describe())
    }
}

/// The control of a deaf agent: it hears nothing.
struct Deaf;

impl AgentControl for Deaf {
    fn terminate(&self) {}

    fn kill(&self) {}
}

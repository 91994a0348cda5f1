//! A launcher that can hold launches: the orchestrator has built the snapshot and asked for an
//! agent, and the agent is not started until the case says `release` — so a case can write
//! between a snapshot's build and its agent's join on both stacks alike.

use fsync_store::launch::{AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Wraps the stack's own launcher (processes, or simulated agent hosts).
#[derive(Clone)]
pub struct HeldLauncher {
    inner: Arc<dyn Launcher>,
    open: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
}

impl HeldLauncher {
    /// Launches pass straight through until [`HeldLauncher::hold`].
    pub fn new(inner: Arc<dyn Launcher>) -> HeldLauncher {
        HeldLauncher { inner, open: watch::Sender::new(true), waiting: Arc::default() }
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
}

impl Launcher for HeldLauncher {
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, Box<dyn Error + Send + Sync>>> {
        let mut open = self.open.subscribe();
        Box::pin(async move {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // The sender lives as long as `self`, so waiting cannot fail while a launch is asked for.
            let _ = open.wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.inner.launch(launch).await
        })
    }

    fn describe(&self) -> String {
        format!("{} (launches can be held)", self.inner.describe())
    }
}

//! Agents on hosts of their own. The orchestrator (on a server host) launches through
//! [`SimLauncher`], which queues the launch; the next free agent host takes it and runs the real
//! agent session code there (or, with `--legacy`, the old container). A host that crashes keeps
//! its launch, as a container keeps its configuration: when the host comes back the agent starts
//! again and rehydrates. The queue remembers where each session runs, for the checkers.

use crate::legacy;
use crate::trace::Trace;
use fsync_agent::config::AgentConfig;
use fsync_agent::session;
use fsync_client::Transport;
use fsync_protocol::snapshot::ExtractLimits;
use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use fsync_store::{Plant, Sources};
use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch, Notify};
use uuid::Uuid;

/// A launch waiting for an agent host, or running on one.
struct Pending {
    launch: AgentLaunch,
    stop: watch::Receiver<bool>,
    exit: oneshot::Sender<AgentExit>,
}

/// Where a session's agent runs.
#[derive(Debug, Clone)]
pub struct Placed {
    pub session: Uuid,
    pub project: Uuid,
    pub host: String,
    /// The server it was launched by (and talks to).
    pub server: String,
    pub token: String,
    /// How many times it started (1, plus one per rehydration after a crash).
    pub runs: u32,
    /// When it first started, in simulated time.
    pub since: std::time::Duration,
    /// How its agent ended, once it has.
    pub ended: Option<String>,
}

/// The launches no agent host has taken yet (shared by every server and agent host), and where
/// the taken ones run, by project directory.
#[derive(Clone, Default)]
pub struct AgentQueue {
    pending: Arc<Mutex<VecDeque<Pending>>>,
    ready: Arc<Notify>,
    placed: Arc<Mutex<BTreeMap<PathBuf, Placed>>>,
}

impl AgentQueue {
    async fn next(&self) -> Pending {
        loop {
            let next = self.pending.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            match next {
                Some(pending) => return pending,
                None => self.ready.notified().await,
            }
        }
    }

    /// Every agent started so far, by project directory.
    pub fn placed(&self) -> BTreeMap<PathBuf, Placed> {
        self.placed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn started(&self, launch: &AgentLaunch, host: &str) {
        let server = launch.api_url.trim_start_matches("http://").split(':').next().unwrap_or_default().to_owned();
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        let entry = placed.entry(launch.project_dir.clone()).or_insert_with(|| Placed {
            session: launch.session_id,
            project: launch.project_id,
            host: host.to_owned(),
            server,
            token: launch.realtime_token.clone(),
            runs: 0,
            since: crate::trace::now(),
            ended: None,
        });
        entry.runs += 1;
        entry.ended = None;
    }

    fn ended(&self, launch: &AgentLaunch, how: &AgentExit) {
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = placed.get_mut(&launch.project_dir) {
            entry.ended = Some(how.last_words.clone().unwrap_or_else(|| how.how.clone()));
        }
    }
}

/// The orchestrator's launcher in the simulation.
pub struct SimLauncher {
    pub queue: AgentQueue,
}

impl Launcher for SimLauncher {
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, Box<dyn Error + Send + Sync>>> {
        let (stop_tx, stop) = watch::channel(false);
        let (exit, exit_rx) = oneshot::channel();
        self.queue.pending.lock().unwrap_or_else(|e| e.into_inner()).push_back(Pending { launch, stop, exit });
        self.queue.ready.notify_one();
        let exit =
            async move { exit_rx.await.unwrap_or(AgentExit { how: "its host is gone".into(), last_words: None }) };
        Box::pin(async move {
            Ok(Launched { pid: None, control: Box::new(Stop(stop_tx)), exit: Box::pin(exit), preview_url: None })
        })
    }

    fn describe(&self) -> String {
        "simulated agent hosts".into()
    }
}

/// Asks a simulated agent to stop (a kill is a host crash, which the fault schedule does).
struct Stop(watch::Sender<bool>);

impl AgentControl for Stop {
    fn terminate(&self) {
        let _ = self.0.send(true);
    }

    fn kill(&self) {
        let _ = self.0.send(true);
    }
}

/// One agent host, and what outlives its crashes: the launch it runs.
#[derive(Clone)]
pub struct AgentHost {
    pub name: String,
    pub queue: AgentQueue,
    pub sources: Sources,
    pub plant: Option<Plant>,
    pub legacy: bool,
    pub trace: Trace,
    running: Arc<Mutex<Option<Pending>>>,
}

impl AgentHost {
    pub fn new(
        name: String,
        queue: AgentQueue,
        sources: Sources,
        plant: Option<Plant>,
        legacy: bool,
        trace: Trace,
    ) -> Self {
        AgentHost { name, queue, sources, plant, legacy, trace, running: Arc::default() }
    }

    /// Takes launches one after another and runs each agent to its end; after a crash, first
    /// runs again the launch it had.
    pub async fn run(self) -> turmoil::Result {
        let transport = Transport::new(Arc::new(crate::net::SimDialer));
        loop {
            let restarted = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
            let pending = match restarted {
                Some(pending) => {
                    self.trace.note(&self.name, format!("agent restarts: session {}", pending.launch.session_id));
                    pending
                }
                None => self.queue.next().await,
            };
            let (launch, mut stop) = (pending.launch.clone(), pending.stop.clone());
            *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(pending);
            self.queue.started(&launch, &self.name);
            let config = self.config(launch.clone(), transport.clone());
            // Told to stop, it stops; an orchestrator that goes away (its server restarted) is
            // not a reason to stop: a container outlives the instance that started it.
            let shutdown = async move {
                if stop.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let ended = if self.legacy {
                legacy::run_agent(config, self.name.clone(), self.trace.clone(), shutdown).await;
                AgentExit { how: "stopped".into(), last_words: None }
            } else {
                match session::run(config, shutdown).await {
                    Ok(()) => AgentExit { how: "stopped".into(), last_words: None },
                    Err(e) => AgentExit { how: "failed".into(), last_words: Some(format!("{e:#}")) },
                }
            };
            self.queue.ended(&launch, &ended);
            let finished = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(finished) = finished {
                let _ = finished.exit.send(ended);
            }
        }
    }

    fn config(&self, launch: AgentLaunch, transport: Transport) -> AgentConfig {
        AgentConfig {
            project: launch.project_id,
            session: launch.session_id,
            snapshot_url: launch.snapshot_url,
            token: launch.realtime_token,
            api_url: launch.api_url,
            dir: launch.project_dir,
            exec: None,
            preview: None,
            limits: ExtractLimits::default(),
            sources: self.sources.clone(),
            transport,
            plant: self.plant,
        }
    }
}

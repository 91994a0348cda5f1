//! Agents on hosts of their own. The orchestrator (on a server host) launches through
//! [`SimLauncher`], which queues the launch; the next free agent host takes it and runs the real
//! agent session code there. An agent host that crashes takes its agent with it, and the
//! orchestrator sees the exit, as it sees a container die.

use fsync_agent::config::AgentConfig;
use fsync_agent::session;
use fsync_client::Transport;
use fsync_protocol::snapshot::ExtractLimits;
use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use fsync_store::{Plant, Sources};
use std::collections::VecDeque;
use std::error::Error;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch, Notify};

/// A launch waiting for an agent host.
struct Pending {
    launch: AgentLaunch,
    stop: watch::Receiver<bool>,
    exit: oneshot::Sender<AgentExit>,
}

/// The launches no agent host has taken yet (shared by every server and agent host).
#[derive(Clone, Default)]
pub struct AgentQueue {
    pending: Arc<Mutex<VecDeque<Pending>>>,
    ready: Arc<Notify>,
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
            async move { exit_rx.await.unwrap_or(AgentExit { how: "its host crashed".into(), last_words: None }) };
        Box::pin(async move { Ok(Launched { pid: None, control: Box::new(Stop(stop_tx)), exit: Box::pin(exit) }) })
    }

    fn describe(&self) -> String {
        "simulated agent hosts".into()
    }
}

/// Asks a simulated agent to stop (a kill is a host crash, which the driver does).
struct Stop(watch::Sender<bool>);

impl AgentControl for Stop {
    fn terminate(&self) {
        let _ = self.0.send(true);
    }

    fn kill(&self) {
        let _ = self.0.send(true);
    }
}

/// One agent host: takes launches one after another and runs each agent to its end.
pub async fn agent_host(queue: AgentQueue, sources: Sources, plant: Option<Plant>) -> turmoil::Result {
    let transport = Transport::new(Arc::new(crate::net::SimDialer));
    loop {
        let Pending { launch, mut stop, exit } = queue.next().await;
        let config = AgentConfig {
            project: launch.project_id,
            session: launch.session_id,
            snapshot_url: launch.snapshot_url,
            token: launch.realtime_token,
            api_url: launch.api_url,
            dir: launch.project_dir,
            exec: None,
            limits: ExtractLimits::default(),
            sources: sources.clone(),
            transport: transport.clone(),
            plant,
        };
        // Told to stop, it stops; an orchestrator that goes away (its server restarted) is not
        // a reason to stop: a container outlives the instance that started it.
        let shutdown = async move {
            if stop.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let ended = match session::run(config, shutdown).await {
            Ok(()) => AgentExit { how: "stopped".into(), last_words: None },
            Err(e) => AgentExit { how: "failed".into(), last_words: Some(format!("{e:#}")) },
        };
        let _ = exit.send(ended);
    }
}

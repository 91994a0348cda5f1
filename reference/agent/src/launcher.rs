//! Agents as in-process tasks: the same session code as the `fsync-agent` binary, started by the
//! orchestrator through the [`Launcher`] port, for tests, the simulator and load runs with
//! hundreds of agents. Terminating one resolves its shutdown signal (as SIGTERM does the
//! binary's); killing one aborts its task (as SIGKILL does).

use crate::config::AgentConfig;
use crate::session;
use fsync_client::Transport;
use fsync_protocol::snapshot::ExtractLimits;
use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use fsync_store::Sources;
use std::error::Error;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Starts agents as tasks on the current runtime, reaching the API through `transport`.
#[derive(Debug, Clone)]
pub struct InProcessLauncher {
    pub sources: Sources,
    pub transport: Transport,
    pub limits: ExtractLimits,
}

impl InProcessLauncher {
    pub fn new(sources: Sources, transport: Transport) -> InProcessLauncher {
        InProcessLauncher { sources, transport, limits: ExtractLimits::default() }
    }
}

impl Launcher for InProcessLauncher {
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, Box<dyn Error + Send + Sync>>> {
        let config = AgentConfig {
            project: launch.project_id,
            session: launch.session_id,
            snapshot_url: launch.snapshot_url,
            token: launch.realtime_token,
            api_url: launch.api_url.trim_end_matches('/').to_owned(),
            dir: launch.project_dir,
            exec: launch.exec,
            preview: None,
            limits: self.limits,
            sources: self.sources.clone(),
            transport: self.transport.clone(),
            plant: None,
        };
        Box::pin(async move {
            let (stop, stopped) = watch::channel(false);
            let shutdown = async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let task = tokio::spawn(session::run(config, shutdown));
            let control = Control { stop, abort: task.abort_handle() };
            let exit = async move {
                match task.await {
                    Ok(Ok(())) => AgentExit { how: "stopped".into(), last_words: None },
                    Ok(Err(e)) => AgentExit { how: "failed".into(), last_words: Some(format!("{e:#}")) },
                    Err(e) if e.is_cancelled() => AgentExit { how: "killed".into(), last_words: None },
                    Err(e) => AgentExit { how: "panicked".into(), last_words: Some(e.to_string()) },
                }
            };
            Ok(Launched { pid: None, control: Box::new(control), exit: Box::pin(exit), preview_url: None })
        })
    }

    fn describe(&self) -> String {
        "in-process agents".into()
    }
}

struct Control {
    stop: watch::Sender<bool>,
    abort: AbortHandle,
}

impl AgentControl for Control {
    fn terminate(&self) {
        let _ = self.stop.send(true);
    }

    fn kill(&self) {
        self.abort.abort();
    }
}

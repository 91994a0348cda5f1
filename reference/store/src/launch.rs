//! The launcher port: how the orchestrator starts a session's agent (DESIGN §8, §9).
//!
//! A child process with a cleared environment holding exactly the five variables is what
//! `serve` does (`fsync_reference::orchestrator::ProcessLauncher`); an in-process task running
//! the same agent session code (`fsync_agent::launcher::InProcessLauncher`) is what tests, the
//! simulator and load runs with hundreds of agents use. Both report the same way: the agent calls
//! its session's status endpoint, and its end is noticed through [`Launched::exit`].

use crate::platform::BoxFuture;
use std::error::Error;
use std::path::PathBuf;
use uuid::Uuid;

/// Everything an agent is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLaunch {
    pub project_id: Uuid,
    pub session_id: Uuid,
    /// Empty: the legacy path (file by file through the API).
    pub snapshot_url: String,
    pub realtime_token: String,
    pub api_url: String,
    /// The directory the agent hydrates and keeps in sync.
    pub project_dir: PathBuf,
    /// The session's own directory (the project directory and the agent's log are inside).
    pub session_dir: PathBuf,
    /// The command started after hydration (`--exec`): the preview's dev server, which the
    /// launcher gives a port to listen on (`PORT`, `HOST`) and publishes as [`Launched::preview_url`].
    pub exec: Option<String>,
}

impl AgentLaunch {
    /// The five variables of DESIGN §8, exactly as a container sees them.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("PROJECT_ID", self.project_id.to_string()),
            ("SESSION_ID", self.session_id.to_string()),
            ("SNAPSHOT_URL", self.snapshot_url.clone()),
            ("REALTIME_TOKEN", self.realtime_token.clone()),
            ("FSYNC_API_URL", self.api_url.clone()),
        ]
    }
}

/// How an agent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExit {
    /// What happened, as a person reads it (`exit status: 1`, `signal: 9 (SIGKILL)`, `killed`).
    pub how: String,
    /// The agent's last words: its last log line, or the error it stopped with.
    pub last_words: Option<String>,
}

/// Stops a running agent.
pub trait AgentControl: Send + Sync {
    /// Asks the agent to stop cleanly (SIGTERM; in-process, its shutdown signal).
    fn terminate(&self);
    /// Stops it at once (SIGKILL; in-process, its task is aborted).
    fn kill(&self);
}

/// A started agent.
pub struct Launched {
    /// Its process id, when it is a process.
    pub pid: Option<u32>,
    pub control: Box<dyn AgentControl>,
    /// Resolves when the agent has ended, however it ended.
    pub exit: BoxFuture<'static, AgentExit>,
    /// Where a browser reaches the session's dev server (`http://127.0.0.1:PORT/`), when it runs
    /// one (`exec`) and the launcher publishes it.
    pub preview_url: Option<String>,
}

/// Starts agents.
pub trait Launcher: Send + Sync + 'static {
    /// Starts one agent for `launch`.
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, Box<dyn Error + Send + Sync>>>;

    /// What this launcher starts, for the startup banner (`agent /path/to/fsync-agent`).
    fn describe(&self) -> String;

    /// Removes what is left of `sessions`' agents, which an earlier run of this instance started
    /// and no longer watches (it failed them when it started again). A process or a task ended
    /// with that run, so by default there is nothing to remove; a container outlives it.
    fn remove_leftovers<'a>(&'a self, sessions: &'a [Uuid]) -> BoxFuture<'a, Result<(), Box<dyn Error + Send + Sync>>> {
        let _ = sessions;
        Box::pin(async { Ok(()) })
    }
}

//! Agents as child processes (what `serve` does): a cleared environment holding exactly the five
//! variables, `--dir` and `--exec`, stdout discarded, stderr kept in the session's `agent.log`.
//! SIGTERM asks the agent to stop; SIGKILL stops it. Dropping the exit future kills the child.

use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Starts `agent_bin` for each session.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    pub agent_bin: PathBuf,
    /// Arguments before the agent's own (`agent` when the agent is a subcommand of the binary).
    pub leading_args: Vec<String>,
}

impl ProcessLauncher {
    pub fn new(agent_bin: impl Into<PathBuf>) -> ProcessLauncher {
        ProcessLauncher { agent_bin: agent_bin.into(), leading_args: Vec::new() }
    }

    /// Starts `bin ARGS... --dir DIR`: for a binary that carries the agent as a subcommand.
    pub fn with_leading_args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> ProcessLauncher {
        self.leading_args = args.into_iter().map(Into::into).collect();
        self
    }
}

impl Launcher for ProcessLauncher {
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, Box<dyn Error + Send + Sync>>> {
        Box::pin(async move {
            let log_path = launch.session_dir.join("agent.log");
            let log = std::fs::File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
            let mut command = tokio::process::Command::new(&self.agent_bin);
            command
                .env_clear()
                .envs(launch.env())
                .args(&self.leading_args)
                .arg("--dir")
                .arg(&launch.project_dir)
                .current_dir(&launch.session_dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .kill_on_drop(true);
            if let Some(exec) = &launch.exec {
                command.arg("--exec").arg(exec);
            }
            let mut child = command.spawn().map_err(|e| format!("spawn {}: {e}", self.agent_bin.display()))?;
            let pid = child.id();
            let ended = Arc::new(AtomicBool::new(false));
            let control = Signals { pid, ended: ended.clone() };
            let exit = async move {
                let status = child.wait().await;
                ended.store(true, Ordering::SeqCst);
                let how = match status {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("could not be waited for: {e}"),
                };
                AgentExit { how, last_words: last_line(&log_path) }
            };
            Ok(Launched { pid, control: Box::new(control), exit: Box::pin(exit) })
        })
    }

    fn describe(&self) -> String {
        let args: String = self.leading_args.iter().map(|a| format!(" {a}")).collect();
        format!("agent {}{args}", self.agent_bin.display())
    }
}

/// Signals an agent process until it has ended (never a recycled pid).
struct Signals {
    pid: Option<u32>,
    ended: Arc<AtomicBool>,
}

impl Signals {
    fn send(&self, signal: libc::c_int) {
        let Some(pid) = self.pid.and_then(|p| libc::pid_t::try_from(p).ok()) else { return };
        if !self.ended.load(Ordering::SeqCst) {
            // SAFETY: kill(2) on a child this instance spawned and has not reaped yet.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

impl AgentControl for Signals {
    fn terminate(&self) {
        self.send(libc::SIGTERM);
    }

    fn kill(&self) {
        self.send(libc::SIGKILL);
    }
}

/// The last non-empty line of the agent's log.
fn last_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned)
}

//! Agents as child processes (what `serve` does): a cleared environment holding exactly the five
//! variables, `--dir` and `--exec`, stdout discarded, stderr kept in the session's `agent.log`.
//! A session that runs a dev server (`--exec`) gets a loopback port of its own for it
//! (`--preview-port`, published as `http://127.0.0.1:PORT/`; see `ports`) and, when the launcher has shared
//! dependencies, `node_modules` beside its project directory: a link to them, never a copy. Each
//! agent leads a process group of its own, so SIGTERM asks it and its dev server to stop, and
//! SIGKILL stops both; once the agent has ended, whatever is left of its group is killed too.
//! Dropping the exit future kills both. The dev server runs the project's own code as this
//! server's user: the process launcher is for code the operator trusts (the Docker launcher
//! confines it).

use super::ports::{PortLease, PreviewPorts};
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
    /// A directory holding the previews' `node_modules` (`FSYNC_PREVIEW_DEPS`), linked beside
    /// each session's project directory.
    pub preview_deps: Option<PathBuf>,
    /// The ports its sessions' dev servers hold.
    ports: Arc<PreviewPorts>,
}

impl ProcessLauncher {
    pub fn new(agent_bin: impl Into<PathBuf>) -> ProcessLauncher {
        ProcessLauncher {
            agent_bin: agent_bin.into(),
            leading_args: Vec::new(),
            preview_deps: None,
            ports: Arc::default(),
        }
    }

    /// Shares `dir`'s `node_modules` with every session's dev server.
    pub fn with_preview_deps(mut self, dir: impl Into<PathBuf>) -> ProcessLauncher {
        self.preview_deps = Some(dir.into());
        self
    }

    /// The dev server's port and dependencies for a session that runs one: its URL, and the port
    /// it holds until its agent has ended.
    fn prepare_preview(
        &self,
        launch: &AgentLaunch,
        command: &mut tokio::process::Command,
    ) -> Result<(String, PortLease), String> {
        if let Some(deps) = &self.preview_deps {
            link_deps(&deps.join("node_modules"), &launch.session_dir.join("node_modules"))?;
        }
        let lease = self.ports.take().map_err(|e| format!("a port for the dev server: {e}"))?;
        command.arg("--preview-port").arg(lease.port.to_string()).arg("--preview-host").arg("127.0.0.1");
        Ok((format!("http://127.0.0.1:{}/", lease.port), lease))
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
            let (mut preview_url, mut lease) = (None, None);
            if let Some(exec) = &launch.exec {
                command.arg("--exec").arg(exec);
                let (url, held) = self.prepare_preview(&launch, &mut command)?;
                (preview_url, lease) = (Some(url), Some(held));
            }
            command.process_group(0);
            let mut child = command.spawn().map_err(|e| format!("spawn {}: {e}", self.agent_bin.display()))?;
            let pid = child.id();
            let ended = Arc::new(AtomicBool::new(false));
            let control = Signals { pid, ended: ended.clone() };
            // Dropped unfinished (the server stops without stopping it): the whole group goes.
            let on_drop = KillOnDrop(control.clone());
            let exit = async move {
                let _lease = lease;
                let status = child.wait().await;
                // What is left of its group (a dev server whose agent died alone) goes with it.
                on_drop.0.kill();
                ended.store(true, Ordering::SeqCst);
                let how = match status {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("could not be waited for: {e}"),
                };
                AgentExit { how, last_words: last_line(&log_path) }
            };
            Ok(Launched { pid, control: Box::new(control), exit: Box::pin(exit), preview_url })
        })
    }

    fn describe(&self) -> String {
        let args: String = self.leading_args.iter().map(|a| format!(" {a}")).collect();
        let deps = match &self.preview_deps {
            Some(deps) => format!(", previews sharing {}", deps.join("node_modules").display()),
            None => String::new(),
        };
        format!("agent {}{args}{deps}", self.agent_bin.display())
    }
}

/// Signals an agent process until it has ended (never a recycled pid).
#[derive(Clone)]
struct Signals {
    pid: Option<u32>,
    ended: Arc<AtomicBool>,
}

impl Signals {
    fn send(&self, signal: libc::c_int) {
        let Some(pid) = self.pid.and_then(|p| libc::pid_t::try_from(p).ok()) else { return };
        if !self.ended.load(Ordering::SeqCst) {
            // SAFETY: kill(2) on the process group of a child this instance spawned (its leader)
            // and has not reaped yet: the agent and its dev server.
            unsafe { libc::kill(-pid, signal) };
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

/// Kills an agent's process group (it and its dev server) when dropped before it ended.
struct KillOnDrop(Signals);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// Links the shared `deps` as `link` (a link already there to the same place is kept).
fn link_deps(deps: &Path, link: &Path) -> Result<(), String> {
    match std::os::unix::fs::symlink(deps, link) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == std::io::ErrorKind::AlreadyExists && std::fs::read_link(link).is_ok_and(|to| to == deps) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("link {} to {}: {e}", link.display(), deps.display())),
    }
}

/// The last non-empty line of the agent's log.
fn last_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned)
}

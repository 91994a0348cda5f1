//! Agents this machine runs against a deployment it does not (a remote run's edits): real agent
//! processes, each with a container token minted with the deployment's JWT secret for a session
//! id of its own, hydrating file by file through the API (the snapshot manifest belongs to the
//! deployment's orchestrator and its own sessions). Their status reports go to that orchestrator,
//! which does not know their sessions and refuses them; an agent only logs that.

use crate::clock;
use crate::progress::Progress;
use anyhow::{bail, Context};
use fsync_protocol::jwt::{self, Secret};
use fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use uuid::Uuid;

/// How long an agent may take to report itself running.
const RUNNING_WITHIN: Duration = Duration::from_secs(120);

/// What the agents connect to.
pub struct Target<'a> {
    pub api_url: &'a str,
    pub secret: &'a Secret,
    pub project: Uuid,
}

/// Agent processes following one project, each in a directory of its own.
pub struct Fleet {
    children: Vec<Child>,
    pub dirs: Vec<PathBuf>,
}

impl Fleet {
    /// Starts `n` agents (`agent`: a program and its leading args) with directories under `work`
    /// and waits until each logs that it is running (hydrated and caught up).
    pub async fn start(
        agent: &(PathBuf, Vec<String>),
        target: &Target<'_>,
        n: usize,
        work: &Path,
        progress: &Progress,
    ) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet { children: Vec::with_capacity(n), dirs: Vec::with_capacity(n) };
        let mut logs = Vec::with_capacity(n);
        for i in 0..n {
            let dir = work.join(format!("agent-{i}")).join("project");
            let mut child = spawn(agent, target, &dir)?;
            logs.push(child.stderr.take().context("the agent's stderr")?);
            fleet.children.push(child);
            fleet.dirs.push(dir);
        }
        for (i, log) in logs.into_iter().enumerate() {
            match tokio::time::timeout(RUNNING_WITHIN, running(log)).await {
                Ok(Ok(())) => progress.inc(1),
                Ok(Err(e)) => bail!("agent {i}: {e:#}"),
                Err(_) => bail!("agent {i} did not report running within {RUNNING_WITHIN:?}"),
            }
        }
        Ok(fleet)
    }

    /// Stops every agent (SIGKILL: a test agent has nothing to flush) and waits for it.
    pub async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

fn spawn(agent: &(PathBuf, Vec<String>), target: &Target<'_>, dir: &Path) -> anyhow::Result<Child> {
    let session = fsync_store::Ids::uuid(&fsync_store::SystemIds);
    let claims = jwt::container_claims(
        &session.to_string(),
        &target.project.to_string(),
        clock::wall_s(),
        CONTAINER_TOKEN_MAX_TTL_S,
    );
    Command::new(&agent.0)
        .args(&agent.1)
        .arg("--dir")
        .arg(dir)
        .env("PROJECT_ID", target.project.to_string())
        .env("SESSION_ID", session.to_string())
        .env("SNAPSHOT_URL", "")
        .env("REALTIME_TOKEN", jwt::sign(target.secret, &claims))
        .env("FSYNC_API_URL", target.api_url)
        .env("FSYNC_AGENT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start the agent {}", agent.0.display()))
}

/// Reads the agent's log until it says it is running; its last lines when it ends first.
async fn running(log: ChildStderr) -> anyhow::Result<()> {
    let mut lines = BufReader::new(log).lines();
    let mut last = Vec::new();
    while let Some(line) = lines.next_line().await.context("read the agent's log")? {
        if line.contains(" running ") || line.ends_with(" running") {
            // Keep draining the log so that the agent never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(());
        }
        last.push(line);
        if last.len() > 5 {
            last.remove(0);
        }
    }
    bail!("it exited before running: {}", last.join(" | "))
}

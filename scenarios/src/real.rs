//! The real stack: PostgreSQL (a fresh database per case), the reference server (one or two
//! instances on that database, storage in one local directory they share), agents as child
//! processes of the real `fsync-agent` binary. Each server hands its agents the URL of a fault
//! proxy in front of it, so a cut drops and refuses every agent connection while people still
//! reach the server; a restart stops an instance (its agents with it) and starts another on the
//! same database and storage, and the proxy sends agents to it.

use crate::case::{Case, Flags};
use crate::hold::HeldLauncher;
use crate::run::{self, Run};
use crate::stack::Stack;
use fsync_client::transport::Transport;
use fsync_client::Api;
use fsync_reference::orchestrator::ProcessLauncher;
use fsync_reference::realtime::RealtimeConfig;
use fsync_store::{Clock, SystemClock};
use fsync_testkit::proxy::{Fault, FaultProxy};
use fsync_testkit::{spawn_app, AppOptions, PlatformOptions, TestApp, TestDb};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a case may wait for something to settle, in real time.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `case` on the real stack, with agents from `agent_bin`.
pub async fn run_case(case: &Case, agent_bin: PathBuf) -> Run {
    let mut stack = match RealStack::start(case, agent_bin).await {
        Ok(stack) => stack,
        Err(e) => return Run { transcript: format!("the real stack did not start: {e}\n"), mismatches: vec![] },
    };
    let run = run::run(case, &mut stack).await;
    stack.stop().await;
    run
}

/// The agent binary: `FSYNC_AGENT_BIN`, else `fsync-agent` in the target directory this program
/// was built in (`cargo test --workspace` and `cargo build -p fsync-agent` put it there).
pub fn agent_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("FSYNC_AGENT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("find this program: {e}"))?;
    let candidates = exe.ancestors().skip(1).take(2).map(|dir| dir.join("fsync-agent"));
    let found = candidates.clone().find(|path| path.is_file());
    found.ok_or_else(|| {
        let looked: Vec<String> = candidates.map(|p| p.display().to_string()).collect();
        format!(
            "no fsync-agent binary (looked at {}): build it with `cargo build -p fsync-agent`, or set FSYNC_AGENT_BIN",
            looked.join(", ")
        )
    })
}

/// One server instance, the proxy its agents reach it through, and the one people reach it
/// through (a stable address across restarts).
struct Instance {
    app: TestApp,
    agents: FaultProxy,
    people: FaultProxy,
}

struct RealStack {
    db: Arc<TestDb>,
    storage: tempfile::TempDir,
    instances: Vec<Instance>,
    launcher: HeldLauncher,
    token_ttl_s: Option<u64>,
    transport: Transport,
}

impl RealStack {
    async fn start(case: &Case, agent_bin: PathBuf) -> Result<RealStack, String> {
        let db = Arc::new(TestDb::migrated().await.map_err(|e| format!("create a test database: {e:#}"))?);
        let mut stack = RealStack {
            db,
            storage: tempfile::tempdir().map_err(|e| format!("a storage directory: {e}"))?,
            instances: Vec::new(),
            launcher: HeldLauncher::new(Arc::new(ProcessLauncher::new(agent_bin))),
            token_ttl_s: case.setup.container_token_ttl.map(|d| d.as_secs()),
            transport: Transport::tcp(),
        };
        for _ in 0..case.setup.servers {
            let app = stack.spawn(case.setup.flags).await;
            let agents = FaultProxy::start(app.addr).await.map_err(|e| format!("start a fault proxy: {e}"))?;
            let people = FaultProxy::start(app.addr).await.map_err(|e| format!("start a fault proxy: {e}"))?;
            app.platform.set_public_url(agents.url());
            stack.instances.push(Instance { app, agents, people });
        }
        Ok(stack)
    }

    /// A server on the stack's database and storage, with `flags`.
    async fn spawn(&self, flags: Flags) -> TestApp {
        let platform = PlatformOptions {
            storage_url: Some(format!("file://{}", self.storage.path().display())),
            launcher: Some(Arc::new(self.launcher.clone())),
            legacy_hydration: !flags.snapshot_hydration,
            token_ttl_s: self.token_ttl_s,
            ..PlatformOptions::default()
        };
        let realtime = RealtimeConfig { keep_client_broadcast: flags.client_broadcast, ..RealtimeConfig::default() };
        spawn_app(AppOptions::on(self.db.clone()).realtime(realtime).platform(platform)).await
    }

    async fn stop(self) {
        for instance in self.instances {
            let _ = instance.app.stop().await;
        }
    }
}

impl Stack for RealStack {
    fn name(&self) -> &'static str {
        "real"
    }

    fn api(&self, n: usize) -> Api {
        let instance = &self.instances[n];
        Api::new(instance.people.url(), &instance.app.anon_key, self.transport.clone())
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }

    fn launcher(&self) -> Option<&HeldLauncher> {
        Some(&self.launcher)
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    async fn cut_agents(&mut self, cut: bool) -> Result<(), String> {
        for instance in &self.instances {
            if cut {
                instance.agents.set(Fault::Cut);
            } else {
                instance.agents.restore();
            }
        }
        Ok(())
    }

    async fn restart(&mut self, flags: Flags) -> Result<(), String> {
        for n in 0..self.instances.len() {
            let fresh = self.spawn(flags).await;
            let old = std::mem::replace(&mut self.instances[n].app, fresh);
            old.stop().await.map_err(|e| format!("stop server {n}: {e}"))?;
            let instance = &self.instances[n];
            instance.agents.set_upstream(instance.app.addr);
            instance.people.set_upstream(instance.app.addr);
            instance.app.platform.set_public_url(instance.agents.url());
        }
        Ok(())
    }
}

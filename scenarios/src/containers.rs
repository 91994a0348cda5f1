//! The containers stack: PostgreSQL, the S3 server, the reference servers and the agents all in
//! containers on a private Docker network (issue 22). The services are shared by the cases of a
//! run, each case getting a fresh database, secret and servers; every server starts its
//! sessions' agents as preview containers (the Docker launcher) that reach it under its own
//! name. People reach each server through a fault proxy on loopback (a stable address across
//! restarts); `cut agents` disconnects every preview container from the network, and a restart
//! stops every server container (its sessions end) and starts another under the same instance
//! with the new flags.
//!
//! The launcher runs inside the server containers, out of the case's reach: a case that holds an
//! agent, deafens one or watches one end ([`cannot_run`]) runs on the other two stacks only.

use crate::case::{Action, Case, Flags};
use crate::hold::HeldLauncher;
use crate::run::{self, Run};
use crate::stack::Stack;
use fsync_client::transport::Transport;
use fsync_client::Api;
use fsync_protocol::jwt::Secret;
use fsync_protocol::snapshot::SessionView;
use fsync_reference::config::DEV_JWT_SECRET;
use fsync_reference::orchestrator::docker::{container_name, PROJECT_DIR};
use fsync_store::{Clock, SystemClock};
use fsync_testkit::containers::{hashes_in, OwnImages, ServerSettings, Services, Stack as Containers};
use fsync_testkit::proxy::FaultProxy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a case may wait for something to settle, in real time.
const PATIENCE: Duration = Duration::from_secs(60);

/// Why `case` cannot run on this stack, if it cannot.
pub fn cannot_run(case: &Case) -> Option<&'static str> {
    case.steps.iter().find_map(|step| match &step.action {
        Action::StartSession { held: true, .. } | Action::Release { .. } => {
            Some("it holds an agent's launch, and the launcher runs inside the server containers")
        }
        Action::StartSession { deaf: true, .. } => {
            Some("it deafens an agent to the orchestrator, which runs inside the server containers")
        }
        Action::WaitGone { .. } => {
            Some("it reads the tree an agent held when it ended, which its launcher inside a server container keeps")
        }
        _ => None,
    })
}

/// Runs `case` on servers and agents in containers on `services`, from `own`'s images.
pub async fn run_case(case: &Case, services: &Arc<Services>, own: &OwnImages) -> Run {
    let mut stack = match ContainerStack::start(case, services, own).await {
        Ok(stack) => stack,
        Err(e) => return Run { transcript: format!("the containers stack did not start: {e}\n"), mismatches: vec![] },
    };
    let run = run::run(case, &mut stack).await;
    stack.stop().await;
    run
}

struct ContainerStack {
    containers: Containers,
    /// Server `n`'s settings and the proxy people reach it through.
    servers: Vec<(ServerSettings, FaultProxy)>,
    /// The preview containers cut off the network.
    cut: Vec<String>,
    transport: Transport,
}

impl ContainerStack {
    async fn start(case: &Case, services: &Arc<Services>, own: &OwnImages) -> Result<ContainerStack, String> {
        let mut containers =
            Containers::on(services.clone(), own.clone()).await.map_err(|e| format!("a fresh database: {e:#}"))?;
        // The secret every stack's servers sign with, and the case's people with it.
        containers.secret = Secret::new(DEV_JWT_SECRET);
        let mut servers = Vec::new();
        for n in 0..case.setup.servers {
            let settings = ServerSettings {
                token_ttl_s: case.setup.container_token_ttl.map(|d| d.as_secs()),
                own_url: true,
                ..with_flags(ServerSettings::new(&format!("server-{n}")), case.setup.flags)
            };
            let server = containers.start_server_with(settings.clone()).await.map_err(|e| format!("{e:#}"))?;
            let people = FaultProxy::start(server.addr).await.map_err(|e| format!("start a fault proxy: {e}"))?;
            servers.push((settings, people));
        }
        Ok(ContainerStack { containers, servers, cut: Vec::new(), transport: Transport::tcp() })
    }

    async fn stop(mut self) {
        for (settings, _) in std::mem::take(&mut self.servers) {
            let _ = self.containers.stop_server(&settings.name).await;
        }
    }
}

/// `settings` with the case's flags.
fn with_flags(settings: ServerSettings, flags: Flags) -> ServerSettings {
    ServerSettings {
        snapshot_hydration: flags.snapshot_hydration,
        client_broadcast: flags.client_broadcast,
        ..settings
    }
}

impl Stack for ContainerStack {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn api(&self, n: usize) -> Api {
        Api::new(self.servers[n].1.url(), self.containers.anon_key(), self.transport.clone())
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }

    fn launcher(&self) -> Option<&HeldLauncher> {
        None
    }

    fn agent_tree(&self, view: &SessionView) -> Result<BTreeMap<String, String>, String> {
        hashes_in(&container_name(view.id), PROJECT_DIR)
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    async fn cut_agents(&mut self, cut: bool) -> Result<(), String> {
        if cut {
            for container in self.containers.previews().await.map_err(|e| format!("{e:#}"))? {
                self.containers.disconnect(&container).await.map_err(|e| format!("{e:#}"))?;
                self.cut.push(container);
            }
        } else {
            for container in std::mem::take(&mut self.cut) {
                // A container that ended meanwhile has nothing to reconnect.
                if let Err(e) = self.containers.reconnect(&container).await {
                    if self.containers.docker.inspect_container(&container, None).await.is_ok() {
                        return Err(format!("{e:#}"));
                    }
                }
            }
        }
        Ok(())
    }

    async fn restart(&mut self, flags: Flags) -> Result<(), String> {
        for (settings, people) in &mut self.servers {
            self.containers.stop_server(&settings.name).await.map_err(|e| format!("{e:#}"))?;
            *settings = with_flags(settings.clone(), flags);
            let server = self.containers.start_server_with(settings.clone()).await.map_err(|e| format!("{e:#}"))?;
            people.set_upstream(server.addr);
        }
        Ok(())
    }
}

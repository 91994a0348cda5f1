//! The simulated stack: the case runs as a turmoil client against server hosts running the real
//! router on the model and an in-memory bucket, with agent hosts running the real agent
//! (`fsync_sim`'s hosts and seams). Cuts are turmoil partitions between agent and server hosts;
//! a restart ends every server's `serve` and starts it again with the new flags, on the same
//! model and bucket, as a redeploy keeps its database. Time is simulated: a case's waits cost
//! nothing, and the same seed runs the same way.

use crate::case::{Case, Flags};
use crate::hold::HeldLauncher;
use crate::run::{self, Run};
use crate::stack::Stack;
use fsync_client::transport::Transport;
use fsync_client::Api;
use fsync_model::MemStore;
use fsync_protocol::jwt::Secret;
use fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S;
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use fsync_reference::orchestrator::OrchestratorConfig;
use fsync_reference::realtime::RealtimeConfig;
use fsync_reference::storage::Storage;
use fsync_reference::ServerBuilder;
use fsync_sim::clock::{self, SimClock, EPOCH_S};
use fsync_sim::launcher::{AgentHost, AgentQueue, SimLauncher};
use fsync_sim::net::{self, SimDialer, SimListener};
use fsync_sim::trace::Trace;
use fsync_store::Clock;
use object_store::memory::InMemory;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::watch;

/// Agent hosts in every world: at most this many sessions run at once.
const AGENT_HOSTS: usize = 4;
/// How long a case may wait for something to settle, in simulated time.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the server hosts share and outlive: the model, the bucket, the launcher, the flags.
#[derive(Clone)]
struct Shared {
    seed: u64,
    store: Arc<MemStore>,
    objects: Arc<InMemory>,
    launcher: HeldLauncher,
    sessions_dir: PathBuf,
    token_ttl_s: u64,
    /// The flags servers start with, and a restart generation they stop at.
    flags: watch::Sender<(Flags, u64)>,
    /// Server starts so far (each start draws from an id stream of its own).
    starts: watch::Sender<u64>,
}

/// Runs `case` in a simulated world drawn from `seed`.
pub fn run_case(case: &Case, seed: u64) -> Run {
    let dir = tempfile::tempdir().expect("a directory for the agents' projects");
    let queue = AgentQueue::default();
    let shared = Shared {
        seed,
        store: Arc::new(MemStore::with_ids(clock::sources(seed, 1).ids)),
        objects: Arc::new(InMemory::new()),
        launcher: HeldLauncher::new(Arc::new(SimLauncher { queue: queue.clone() })),
        sessions_dir: dir.path().join("sessions"),
        token_ttl_s: case.setup.container_token_ttl.map_or(CONTAINER_TOKEN_MAX_TTL_S, |d| d.as_secs()),
        flags: watch::Sender::new((case.setup.flags, 0)),
        starts: watch::Sender::new(0),
    };
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_S))
        .tick_duration(Duration::from_millis(5))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(3600))
        .build();
    for n in 0..case.setup.servers {
        let shared = shared.clone();
        sim.host(server_name(n), move || server_host(shared.clone(), n));
    }
    for i in 0..AGENT_HOSTS {
        let name = format!("agent-{i}");
        let host = AgentHost::new(
            name.clone(),
            queue.clone(),
            clock::sources(seed, 100 + i as u64),
            None,
            false,
            Trace::default(),
        );
        sim.host(name, move || host.clone().run());
    }
    let result = Arc::new(Mutex::new(None));
    let (case_owned, written) = (case.clone(), result.clone());
    sim.client("scenario", async move {
        let transport = Transport::new(Arc::new(SimDialer));
        let mut stack = SimStack { servers: case_owned.setup.servers, shared, transport };
        stack.wait_for_servers(case_owned.setup.servers as u64).await;
        let run = run::run(&case_owned, &mut stack).await;
        *written.lock().unwrap_or_else(|e| e.into_inner()) = Some(run);
        Ok(())
    });
    if let Err(e) = sim.run() {
        return Run { transcript: format!("the simulation failed: {e}\n"), mismatches: vec![] };
    }
    let run = result.lock().unwrap_or_else(|e| e.into_inner()).take();
    run.unwrap_or_else(|| Run { transcript: "the case never finished\n".into(), mismatches: vec![] })
}

fn server_name(n: usize) -> String {
    format!("server-{n}")
}

/// Server host `n`: serves until a restart, then starts again with the flags of that restart.
async fn server_host(shared: Shared, n: usize) -> turmoil::Result {
    loop {
        let (flags, generation) = *shared.flags.borrow();
        let start = *shared.starts.borrow();
        let sources = clock::sources(shared.seed, 2 + 1_000 * start + n as u64);
        let orchestrator = OrchestratorConfig {
            sessions_dir: shared.sessions_dir.clone(),
            launcher: Arc::new(shared.launcher.clone()),
            snapshot_hydration: flags.snapshot_hydration,
            agent_exec: None,
            token_ttl_s: shared.token_ttl_s,
            max_sessions_per_user: fsync_reference::orchestrator::MAX_SESSIONS_PER_USER,
            instance: format!("server-{n}"),
        };
        let realtime = RealtimeConfig { keep_client_broadcast: flags.client_broadcast, ..RealtimeConfig::default() };
        let server = ServerBuilder::new(shared.store.clone())
            .secret(Secret::new(DEV_JWT_SECRET))
            .sources(sources)
            .realtime(realtime)
            .platform(shared.store.clone(), Storage::from_store(shared.objects.clone(), "memory://"), orchestrator)
            .start()
            .await?;
        if let Some(platform) = &server.platform {
            platform.set_public_url(net::api_url(&server_name(n)));
        }
        let listener = SimListener::bind().await?;
        shared.starts.send_modify(|s| *s += 1);
        let mut restarts = shared.flags.subscribe();
        server
            .serve(listener, async move {
                let _ = restarts.wait_for(|(_, g)| *g > generation).await;
            })
            .await?;
    }
}

struct SimStack {
    servers: usize,
    shared: Shared,
    transport: Transport,
}

impl SimStack {
    async fn wait_for_servers(&self, starts: u64) {
        let _ = self.shared.starts.subscribe().wait_for(|s| *s >= starts).await;
    }

    fn agent_hosts() -> impl Iterator<Item = String> {
        (0..AGENT_HOSTS).map(|i| format!("agent-{i}"))
    }
}

impl Stack for SimStack {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn api(&self, n: usize) -> Api {
        Api::new(net::api_url(&server_name(n)), anon_key(&Secret::new(DEV_JWT_SECRET)), self.transport.clone())
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SimClock { epoch_s: EPOCH_S })
    }

    fn launcher(&self) -> Option<&HeldLauncher> {
        Some(&self.shared.launcher)
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    async fn cut_agents(&mut self, cut: bool) -> Result<(), String> {
        for agent in Self::agent_hosts() {
            for n in 0..self.servers {
                if cut {
                    turmoil::partition(agent.as_str(), server_name(n).as_str());
                } else {
                    turmoil::repair(agent.as_str(), server_name(n).as_str());
                }
            }
        }
        Ok(())
    }

    async fn restart(&mut self, flags: Flags) -> Result<(), String> {
        let before = *self.shared.starts.borrow();
        self.shared.flags.send_modify(|(f, generation)| {
            *f = flags;
            *generation += 1;
        });
        self.wait_for_servers(before + self.servers as u64).await;
        Ok(())
    }
}

//! One simulated world for one seed: one or two server hosts running the real router on the
//! model and an in-memory bucket (both outlive the servers, as a database and a bucket do), agent
//! hosts running the real agent, editors running the real client over a few projects, a driver
//! that starts sessions and checks convergence, a watcher that checks every tree as it changes,
//! and faults drawn from the seed. At the end the database is checked against what editors were
//! told, and each agent's catch-ups and rehydrations are counted against a bound.

use crate::check::{Found, Violation};
use crate::clock::{self, EPOCH_S};
use crate::driver::{Driver, QUIESCENCE, QUIESCENCE_FAST};
use crate::faults::{self, Drawn, Fault, FaultKind};
use crate::launcher::{AgentHost, AgentQueue};
use crate::ledger::{self, Ledger};
use crate::trace::{Event, Trace};
use crate::workload::Editor;
use crate::{people, server, watch};
use fsync_model::MemStore;
use fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S;
use fsync_store::Plant;
use object_store::memory::InMemory;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use uuid::Uuid;

/// How a world is drawn.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub agents: usize,
    pub editors: usize,
    /// Members who may only read (their writes must all be refused).
    pub viewers: usize,
    pub projects: usize,
    /// Server hosts; 0 draws one or two from the seed.
    pub servers: usize,
    /// Writes per editor.
    pub ops: usize,
    /// Whether faults are drawn at all.
    pub faults: bool,
    /// A known bug to plant (the checkers must catch it).
    pub plant: Option<Plant>,
    /// The plan's old paths instead of the `seq` design (`--legacy`).
    pub legacy: bool,
}

impl Config {
    /// Two agents, two editors of 25 writes each and a viewer, two projects, faults on.
    pub fn new(seed: u64) -> Config {
        Config {
            seed,
            agents: 2,
            editors: 2,
            viewers: 1,
            projects: 2,
            servers: 0,
            ops: 25,
            faults: true,
            plant: None,
            legacy: false,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub drawn: Drawn,
    pub events: Vec<Event>,
    pub trace: Vec<String>,
    pub trace_hash: String,
    pub sim_seconds: f64,
    /// Per session: how often its agent caught up by seq, and how often it (re)hydrated.
    pub liveness: BTreeMap<Uuid, Liveness>,
}

/// How busy one agent was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub catch_ups: u64,
    pub hydrations: u32,
}

/// Everything the hosts share (the model and the bucket outlive the servers).
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<MemStore>,
    pub objects: Arc<InMemory>,
    pub queue: AgentQueue,
    pub sessions_dir: PathBuf,
    pub projects: Vec<Uuid>,
    pub trace: Trace,
    pub found: Found,
    pub ledger: Ledger,
    pub seed: u64,
    pub plant: Option<Plant>,
    pub legacy: bool,
    pub token_ttl_s: u64,
    /// How many times a server has started (each start has an id stream of its own).
    pub starts: Arc<AtomicUsize>,
}

/// Runs the world of `config` to its end and checks it.
pub fn run(config: &Config) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let drawn = faults::draw(config, &mut rng);
    let dir = tempfile::tempdir().expect("a directory for the agents' projects");
    let store = Arc::new(MemStore::with_ids(clock::sources(config.seed, 1).ids).with_plant(config.plant));
    let people = people::seed(&store, config, &mut rng);
    let shared = Shared {
        store: store.clone(),
        objects: Arc::new(InMemory::new()),
        queue: AgentQueue::default(),
        sessions_dir: dir.path().join("sessions"),
        projects: people.projects.clone(),
        trace: Trace::default(),
        found: Found::default(),
        ledger: Ledger::default(),
        seed: config.seed,
        plant: config.plant,
        legacy: config.legacy,
        token_ttl_s: drawn.token_ttl_s,
        starts: Arc::new(AtomicUsize::new(0)),
    };
    shared.trace.note(
        "world",
        format!("{} servers, container tokens live {} s{}", drawn.servers, drawn.token_ttl_s, mode(config)),
    );
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_S))
        .tick_duration(Duration::from_millis(5))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(Duration::from_secs(600))
        .build();
    add_hosts(&mut sim, config, &drawn, &shared, &people, &mut rng);
    let finished = drive(&mut sim, &drawn.faults, &shared);
    if let Err(e) = finished {
        let detail = format!("the simulation did not finish: {e}");
        shared.found.report(&shared.trace, "world", "1 convergence (liveness)", detail);
    }
    let sim_seconds = sim.elapsed().as_secs_f64();
    for violation in ledger::check(&store, &shared.ledger, &shared.projects) {
        shared.found.report(&shared.trace, "world", violation.invariant, violation.detail);
    }
    let liveness = liveness(&shared);
    check_liveness(&shared, &drawn, &liveness, sim_seconds);
    Outcome {
        seed: config.seed,
        violations: shared.found.all(),
        drawn,
        events: shared.trace.events(),
        trace: shared.trace.lines(),
        trace_hash: shared.trace.hash(),
        sim_seconds,
        liveness,
    }
}

fn mode(config: &Config) -> String {
    let mut mode = String::new();
    if config.legacy {
        mode.push_str(", the legacy paths");
    }
    if let Some(plant) = config.plant {
        mode.push_str(&format!(", planted {plant}"));
    }
    mode
}

/// Servers, agent hosts (one more than sessions at first: the late session's), editors, the
/// driver and the watcher.
fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    config: &Config,
    drawn: &Drawn,
    shared: &Shared,
    people: &people::People,
    rng: &mut fastrand::Rng,
) {
    for n in 0..drawn.servers {
        let (server, name) = (shared.clone(), format!("server-{n}"));
        sim.host(format!("server-{n}"), move || server::server_host(server.clone(), name.clone()));
    }
    for i in 0..=config.agents {
        let name = format!("agent-{i}");
        let sources = clock::sources(config.seed, 100 + i as u64);
        let host = AgentHost::new(
            name.clone(),
            shared.queue.clone(),
            sources,
            config.plant,
            config.legacy,
            shared.trace.clone(),
        );
        sim.host(name, move || host.clone().run());
    }
    let done = Arc::new(AtomicUsize::new(0));
    for (i, member) in people.members.iter().enumerate() {
        let editor = Editor {
            name: format!("editor-{i}"),
            server: format!("server-{}", i % drawn.servers),
            anon: people.anon.clone(),
            token: member.token.clone(),
            projects: people.projects.clone(),
            viewer: member.viewer,
            ops: if member.viewer { config.ops / 5 } else { config.ops },
            rng: fastrand::Rng::with_seed(rng.u64(..)),
            sources: clock::sources(config.seed, 200 + i as u64),
            trace: shared.trace.clone(),
            ledger: shared.ledger.clone(),
            found: shared.found.clone(),
            legacy: config.legacy,
            done: done.clone(),
        };
        sim.client(editor.name.clone(), editor.run());
    }
    let faults = &drawn.faults;
    let faults_end = faults.iter().map(|f| f.at + f.lasts).max().unwrap_or_default();
    // With short-lived tokens, the checks come after the first tokens expired: every agent must
    // have refreshed its own by then (the server closes a channel whose token expires).
    let tokens_expired = if drawn.token_ttl_s < CONTAINER_TOKEN_MAX_TTL_S {
        Duration::from_secs(drawn.token_ttl_s + 5)
    } else {
        Duration::ZERO
    };
    let quiet_after = faults_end.max(tokens_expired);
    let slow = faults.iter().any(|f| f.kind.is_slow());
    let driver = Driver {
        shared: shared.clone(),
        people: people.clone(),
        agents: config.agents,
        servers: drawn.servers,
        writers: people.members.len(),
        done,
        quiet_after,
        quiescence: if slow { QUIESCENCE } else { QUIESCENCE_FAST },
        restarts: faults
            .iter()
            .filter_map(|f| match &f.kind {
                FaultKind::ServerRestart(server) => Some((server.clone(), f.at)),
                _ => None,
            })
            .collect(),
    };
    sim.client("driver", driver.run());
    let watched = shared.clone();
    sim.host("watcher", move || watch::watcher(watched.clone()));
}

/// Steps the simulation, applying each fault when its time comes and healing it after.
fn drive(sim: &mut turmoil::Sim<'_>, faults: &[Fault], shared: &Shared) -> turmoil::Result {
    let mut started = vec![false; faults.len()];
    let mut healed = vec![false; faults.len()];
    loop {
        let now = sim.elapsed();
        for (i, fault) in faults.iter().enumerate() {
            if !started[i] && now >= fault.at {
                started[i] = true;
                shared.trace.fault(now, fault.kind.lanes(), format!("{:?} for {:?}", fault.kind, fault.lasts));
                inject(sim, &fault.kind, shared, i as u64);
            }
            if started[i] && !healed[i] && now >= fault.at + fault.lasts {
                healed[i] = true;
                shared.trace.healed(now, format!("{:?}", fault.kind));
                heal(sim, &fault.kind, shared);
            }
        }
        if sim.step()? {
            return Ok(());
        }
    }
}

fn inject(sim: &mut turmoil::Sim<'_>, kind: &FaultKind, shared: &Shared, n: u64) {
    match kind {
        FaultKind::Partition { host, server } => sim.partition(host.as_str(), server.as_str()),
        FaultKind::OneWay { from, to } => sim.partition_oneway(from.as_str(), to.as_str()),
        FaultKind::Hold { host, server } => sim.hold(host.as_str(), server.as_str()),
        FaultKind::ServerOutage { server, hosts } => {
            for host in hosts {
                sim.partition(host.as_str(), server.as_str());
            }
        }
        FaultKind::Latency(max) => sim.set_max_message_latency(*max),
        FaultKind::ServerRestart(server) => sim.bounce(server.as_str()),
        FaultKind::AgentCrash(host) => sim.crash(host.as_str()),
        FaultKind::DropBroadcasts(percent) => {
            shared.store.drop_broadcasts(Some(f64::from(*percent) / 100.0), shared.seed ^ n)
        }
        FaultKind::LoseFeed(pick) => shared.store.lose_feed(*pick),
        FaultKind::LateEvent(back) => shared.store.repeat_late(*back),
    }
}

fn heal(sim: &mut turmoil::Sim<'_>, kind: &FaultKind, shared: &Shared) {
    match kind {
        FaultKind::Partition { host, server } => sim.repair(host.as_str(), server.as_str()),
        FaultKind::OneWay { from, to } => sim.repair_oneway(from.as_str(), to.as_str()),
        FaultKind::Hold { host, server } => sim.release(host.as_str(), server.as_str()),
        FaultKind::ServerOutage { server, hosts } => {
            for host in hosts {
                sim.repair(host.as_str(), server.as_str());
            }
        }
        FaultKind::Latency(_) => sim.set_max_message_latency(Duration::from_millis(20)),
        FaultKind::AgentCrash(host) => sim.bounce(host.as_str()),
        FaultKind::LoseFeed(_) => shared.store.regain_feed(),
        FaultKind::DropBroadcasts(_) => shared.store.drop_broadcasts(None, 0),
        FaultKind::ServerRestart(_) | FaultKind::LateEvent(_) => {}
    }
}

/// Each session's catch-ups (the database's count of its `list_changes_since` calls) and starts.
fn liveness(shared: &Shared) -> BTreeMap<Uuid, Liveness> {
    let catch_ups = shared.store.calls_by_session("list_changes_since");
    shared
        .queue
        .placed()
        .into_values()
        .map(|p| {
            let caught = catch_ups.get(&p.session.to_string()).copied().unwrap_or(0);
            (p.session, Liveness { catch_ups: caught, hydrations: p.runs })
        })
        .collect()
}

/// No agent loops in catch-ups or rehydrations: a catch-up per join, per gap and per idle
/// period is expected, and a hydration per start of its host.
fn check_liveness(shared: &Shared, drawn: &Drawn, liveness: &BTreeMap<Uuid, Liveness>, sim_seconds: f64) {
    let crashes = drawn.faults.iter().filter(|f| matches!(f.kind, FaultKind::AgentCrash(_))).count() as u32;
    let catch_up_bound = CATCH_UPS_BASE + (sim_seconds / CATCH_UP_EVERY_S) as u64;
    for (session, live) in liveness {
        if live.catch_ups > catch_up_bound {
            let detail = format!("session {session} caught up {} times (bound {catch_up_bound})", live.catch_ups);
            shared.found.report(&shared.trace, "world", "liveness: no agent loops in resyncs", detail);
        }
        if live.hydrations > 1 + crashes {
            let detail = format!("session {session} hydrated {} times with {crashes} crashes", live.hydrations);
            shared.found.report(&shared.trace, "world", "liveness: no agent loops in rehydrations", detail);
        }
    }
}

/// Catch-ups any agent may make, plus one per this many simulated seconds.
const CATCH_UPS_BASE: u64 = 40;
const CATCH_UP_EVERY_S: f64 = 5.0;

//! One simulated world for one seed: a server host running the real router on the model and an
//! in-memory bucket (both outlive the server, as a database and a bucket do), agent hosts running
//! the real agent, editors running the real client, a driver that starts sessions and checks the
//! invariants, and faults drawn from the seed.

use crate::check::{self, Violation};
use crate::clock::{self, EPOCH_S};
use crate::launcher::{agent_host, AgentQueue, SimLauncher};
use crate::net::{SimDialer, SimListener};
use crate::trace::Trace;
use crate::workload::Editor;
use fsync_client::transport::{self, Transport};
use fsync_model::state::{Access, Profile, Project};
use fsync_model::MemStore;
use fsync_protocol::jwt::{self, Secret};
use fsync_protocol::snapshot::{SessionStatus, SessionView, CONTAINER_TOKEN_MAX_TTL_S};
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use fsync_reference::orchestrator::OrchestratorConfig;
use fsync_reference::realtime::RealtimeConfig;
use fsync_reference::storage::Storage;
use fsync_reference::ServerBuilder;
use fsync_store::Plant;
use http::Method;
use object_store::memory::InMemory;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use uuid::Uuid;

/// The API URL every simulated client is given.
pub const API_URL: &str = "http://server:54321";

/// How a world is drawn.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub agents: usize,
    pub editors: usize,
    /// Writes per editor.
    pub ops: usize,
    /// Whether faults are drawn at all.
    pub faults: bool,
    /// A known bug to plant (the checkers must catch it).
    pub plant: Option<Plant>,
}

impl Config {
    /// Two agents, two editors of 25 writes each, faults on.
    pub fn new(seed: u64) -> Config {
        Config { seed, agents: 2, editors: 2, ops: 25, faults: true, plant: None }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub faults: Vec<Fault>,
    pub trace: Vec<String>,
    pub trace_hash: String,
    pub sim_seconds: f64,
}

/// A fault of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub kind: FaultKind,
    /// How long it lasts (a crash restarts at once).
    pub lasts: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The link between a host and the server is cut both ways.
    Partition(String),
    /// Messages take up to this long.
    Latency(Duration),
    /// The server crashes and starts again (sockets and sessions gone; data kept).
    ServerRestart,
    /// While it lasts, each broadcast is lost silently with this chance in percent (Supabase's
    /// `realtime.send` may lose them).
    DropBroadcasts(u32),
    /// The server's feed of broadcasts is lost for a while, then regained with a resync (a lost
    /// LISTEN connection).
    LoseFeed,
    /// An event delivered again, late: the one this many deliveries back.
    LateEvent(usize),
}

/// Everything the hosts share (the model and the bucket outlive the server).
#[derive(Clone)]
struct Shared {
    store: Arc<MemStore>,
    objects: Arc<InMemory>,
    queue: AgentQueue,
    sessions_dir: PathBuf,
    trace: Trace,
    seed: u64,
    plant: Option<Plant>,
    /// How many times a server has started: each start draws from an id stream of its own (a
    /// restarted server must not hand out the ids it handed out before).
    starts: Arc<AtomicUsize>,
}

/// The fault schedule for `config`: which kinds are enabled is itself drawn (swarm testing).
pub fn draw_faults(config: &Config, rng: &mut fastrand::Rng) -> Vec<Fault> {
    if !config.faults {
        return vec![];
    }
    let (partitions, latency, restarts, drops, losses, repeats) =
        (rng.bool(), rng.bool(), rng.bool(), rng.bool(), rng.bool(), rng.bool());
    let mut kinds = Vec::new();
    let mut hosts: Vec<String> = (0..config.agents).map(|i| format!("agent-{i}")).collect();
    hosts.extend((0..config.editors).map(|i| format!("editor-{i}")));
    for _ in 0..rng.usize(1..6) {
        let kind = match rng.u8(0..6) {
            0 if partitions => FaultKind::Partition(hosts[rng.usize(..hosts.len())].clone()),
            1 if latency => FaultKind::Latency(Duration::from_millis(rng.u64(100..2_000))),
            2 if restarts => FaultKind::ServerRestart,
            3 if drops => FaultKind::DropBroadcasts(rng.u32(10..60)),
            4 if losses => FaultKind::LoseFeed,
            5 if repeats => FaultKind::LateEvent(rng.usize(1..6)),
            _ => continue,
        };
        kinds.push(kind);
    }
    let mut faults: Vec<Fault> = kinds
        .into_iter()
        .map(|kind| Fault {
            // Late repeats come while editors still write (afterwards they would repeat old news).
            at: Duration::from_millis(if matches!(kind, FaultKind::LateEvent(_)) {
                rng.u64(1_000..6_000)
            } else {
                rng.u64(2_000..30_000)
            }),
            lasts: Duration::from_millis(rng.u64(500..20_000)),
            kind,
        })
        .collect();
    faults.sort_by_key(|f| f.at);
    faults
}

/// Runs the world of `config` to its end and checks it.
pub fn run(config: &Config) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let faults = draw_faults(config, &mut rng);
    let dir = tempfile::tempdir().expect("a directory for the agents' projects");
    let store = Arc::new(MemStore::with_ids(clock::sources(config.seed, 1).ids).with_plant(config.plant));
    let people = seed_people(&store, config, &mut rng);
    let shared = Shared {
        store: store.clone(),
        objects: Arc::new(InMemory::new()),
        queue: AgentQueue::default(),
        sessions_dir: dir.path().join("sessions"),
        trace: Trace::default(),
        seed: config.seed,
        plant: config.plant,
        starts: Arc::new(AtomicUsize::new(0)),
    };
    let violations = Arc::new(Mutex::new(Vec::new()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_S))
        .tick_duration(Duration::from_millis(5))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(Duration::from_secs(600))
        .build();

    let server = shared.clone();
    sim.host("server", move || server_host(server.clone()));
    // One agent host more than sessions at first: the late session's.
    for i in 0..=config.agents {
        let queue = shared.queue.clone();
        let sources = clock::sources(config.seed, 100 + i as u64);
        let plant = config.plant;
        sim.host(format!("agent-{i}"), move || agent_host(queue.clone(), sources.clone(), plant));
    }
    let done = Arc::new(AtomicUsize::new(0));
    for (i, token) in people.editors.iter().enumerate() {
        let editor = Editor {
            name: format!("editor-{i}"),
            api_url: API_URL.into(),
            anon: people.anon.clone(),
            token: token.clone(),
            project: people.project,
            ops: config.ops,
            rng: fastrand::Rng::with_seed(rng.u64(..)),
            sources: clock::sources(config.seed, 200 + i as u64),
            trace: shared.trace.clone(),
            done: done.clone(),
        };
        sim.client(format!("editor-{i}"), editor.run());
    }
    let quiet_after = faults.iter().map(|f| f.at + f.lasts).max().unwrap_or_default();
    // A stalled stream (a partition, a crawling link) is noticed by heartbeats, and a lost last
    // broadcast by the idle catch-up: both take a while. Otherwise agents catch up at once.
    let slow = faults
        .iter()
        .any(|f| matches!(f.kind, FaultKind::Partition(_) | FaultKind::Latency(_) | FaultKind::DropBroadcasts(_)));
    let quiescence = if slow { QUIESCENCE } else { QUIESCENCE_FAST };
    let driver = Driver {
        shared: shared.clone(),
        people: people.clone(),
        agents: config.agents,
        editors: config.editors,
        done,
        quiet_after,
        quiescence,
        violations: violations.clone(),
    };
    sim.client("driver", driver.run());
    let (watched, project, found) = (shared.clone(), people.project, violations.clone());
    sim.host("watcher", move || watcher(watched.clone(), project, found.clone()));

    let finished = drive(&mut sim, &faults, &shared);
    let mut violations = violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Err(e) = finished {
        violations.push(Violation { invariant: "liveness", detail: format!("the simulation did not finish: {e}") });
    }
    Outcome {
        seed: config.seed,
        violations,
        faults,
        trace: shared.trace.lines(),
        trace_hash: shared.trace.hash(),
        sim_seconds: sim.elapsed().as_secs_f64(),
    }
}

/// Steps the simulation, applying each fault when its time comes and healing it after.
fn drive(sim: &mut turmoil::Sim<'_>, faults: &[Fault], shared: &Shared) -> turmoil::Result {
    let trace = &shared.trace;
    let mut started = vec![false; faults.len()];
    let mut healed = vec![false; faults.len()];
    loop {
        let now = sim.elapsed();
        for (i, fault) in faults.iter().enumerate() {
            if !started[i] && now >= fault.at {
                started[i] = true;
                trace.note_at(now, format!("fault: {:?} for {:?}", fault.kind, fault.lasts));
                match &fault.kind {
                    FaultKind::Partition(host) => sim.partition(host.as_str(), "server"),
                    FaultKind::Latency(max) => sim.set_max_message_latency(*max),
                    FaultKind::ServerRestart => sim.bounce("server"),
                    FaultKind::DropBroadcasts(percent) => {
                        shared.store.drop_broadcasts(Some(f64::from(*percent) / 100.0), shared.seed ^ i as u64)
                    }
                    FaultKind::LoseFeed => shared.store.lose_feed(),
                    FaultKind::LateEvent(back) => shared.store.repeat_late(*back),
                }
            }
            if started[i] && !healed[i] && now >= fault.at + fault.lasts {
                healed[i] = true;
                trace.note_at(now, format!("healed: {:?}", fault.kind));
                match &fault.kind {
                    FaultKind::Partition(host) => sim.repair(host.as_str(), "server"),
                    FaultKind::Latency(_) => sim.set_max_message_latency(Duration::from_millis(20)),
                    FaultKind::LoseFeed => shared.store.regain_feed(),
                    FaultKind::DropBroadcasts(_) => shared.store.drop_broadcasts(None, 0),
                    FaultKind::ServerRestart | FaultKind::LateEvent(_) => {}
                }
            }
        }
        if sim.step()? {
            return Ok(());
        }
    }
}

/// The server: the real router on the model, with Storage, the snapshot function and the
/// orchestrator over the shared bucket, agents launched onto the agent hosts.
async fn server_host(shared: Shared) -> turmoil::Result {
    let start = shared.starts.fetch_add(1, Ordering::SeqCst) as u64;
    let sources = clock::sources(shared.seed, 2 + 1_000 * start);
    let orchestrator = OrchestratorConfig {
        sessions_dir: shared.sessions_dir.clone(),
        launcher: Arc::new(SimLauncher { queue: shared.queue.clone() }),
        snapshot_hydration: true,
        agent_exec: None,
        token_ttl_s: CONTAINER_TOKEN_MAX_TTL_S,
    };
    let storage = Storage::from_store(shared.objects.clone(), "memory://");
    let realtime = RealtimeConfig { plant: shared.plant, ..RealtimeConfig::default() };
    let server = ServerBuilder::new(shared.store.clone())
        .secret(Secret::new(DEV_JWT_SECRET))
        .sources(sources)
        .realtime(realtime)
        .platform(shared.store.clone(), storage, orchestrator)
        .start()
        .await?;
    if let Some(platform) = &server.platform {
        platform.set_public_url(API_URL);
    }
    shared.trace.note("server: up");
    server.serve(SimListener::bind().await?, std::future::pending()).await?;
    Ok(())
}

/// The project, its owner and its editors, with tokens.
#[derive(Clone)]
struct People {
    project: Uuid,
    anon: String,
    owner: String,
    editors: Vec<String>,
}

/// Seeds the model with an owner, editors and one project, as the database would hold them.
fn seed_people(store: &MemStore, config: &Config, rng: &mut fastrand::Rng) -> People {
    let secret = Secret::new(DEV_JWT_SECRET);
    let id = |rng: &mut fastrand::Rng| Uuid::from_u128(rng.u128(..));
    let owner = id(rng);
    let editors: Vec<Uuid> = (0..config.editors).map(|_| id(rng)).collect();
    let project = id(rng);
    store.seed(|state| {
        let mut members = BTreeMap::from([(owner, Access::Owner)]);
        for user in std::iter::once(owner).chain(editors.iter().copied()) {
            state.profiles.insert(user, Profile { email: Some(format!("{user}@sim.test")), display_name: None });
            members.entry(user).or_insert(Access::Editor);
        }
        state.projects.insert(project, Project { name: "simulated".into(), owner, seq: 0, members });
    });
    let token = |user: Uuid| {
        let mut claims = jwt::claims_for("authenticated", EPOCH_S, 24 * 3600);
        claims.insert("sub".into(), json!(user));
        claims.insert("email".into(), json!(format!("{user}@sim.test")));
        jwt::sign(&secret, &claims)
    };
    People { project, anon: anon_key(&secret), owner: token(owner), editors: editors.into_iter().map(token).collect() }
}

/// Starts a session per agent host, waits for the editors and the faults to end, then checks.
struct Driver {
    shared: Shared,
    people: People,
    agents: usize,
    editors: usize,
    done: Arc<AtomicUsize>,
    quiet_after: Duration,
    quiescence: Duration,
    violations: Arc<Mutex<Vec<Violation>>>,
}

/// How long, after the faults stop and the editors finish, every agent has to converge when a
/// fault stalled streams or lost broadcasts (heartbeats and the idle catch-up notice them)...
const QUIESCENCE: Duration = Duration::from_secs(120);
/// ...and when none did (a resync or a reconnect catches up at once).
const QUIESCENCE_FAST: Duration = Duration::from_secs(15);

impl Driver {
    async fn run(self) -> turmoil::Result {
        let transport = Transport::new(Arc::new(SimDialer));
        let mut dirs = Vec::new();
        for n in 0..self.agents {
            match self.start_session(&transport).await {
                Some(view) => {
                    self.shared.trace.note(format!("driver: session {n} running at {}", view.id));
                    dirs.push((view.id, PathBuf::from(view.project_dir)));
                }
                None => self.violate("liveness", format!("session {n} never reached running")),
            }
        }
        while self.done.load(Ordering::SeqCst) < self.editors || elapsed() < self.quiet_after {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.shared.trace.note("driver: faults over, editors done; waiting for quiescence");
        if !self.converge(&dirs, self.quiescence).await {
            return Ok(());
        }
        // A late session with a write racing its start: the write lands before the snapshot is
        // read, between that read and the agent's join, or after the join; the agent must hold it
        // whichever it was (invariant 8).
        let body = json!({"project_id": self.people.project});
        let created = self.call(&transport, Method::POST, "/orchestrator/v1/sessions", &body).await;
        let racing = json!({"project_uuid": self.people.project, "p_file_path": "src/late.ts",
            "p_content": "// written as the late session starts\n", "p_file_type": "typescript"});
        let wrote = self.call(&transport, Method::POST, "/rest/v1/rpc/upsert_project_file", &racing).await;
        self.shared.trace.note(format!(
            "driver: late session {:?}, racing write {:?}",
            created.as_ref().map(|c| c.0),
            wrote.map(|w| w.0)
        ));
        let Some((201, view)) = created else { return Ok(()) };
        let Some(id) = view["id"].as_str() else { return Ok(()) };
        match self.wait_running(&transport, id).await {
            Some(view) => {
                dirs.push((view.id, PathBuf::from(view.project_dir)));
                // A stream a partition wedged may still be waiting for its heartbeat to notice.
                self.converge(&dirs, self.quiescence).await;
            }
            None => self.violate("liveness", "the late session never reached running".into()),
        }
        Ok(())
    }

    /// Waits until every directory holds the project's files, or reports those that do not.
    async fn converge(&self, dirs: &[(Uuid, PathBuf)], within: Duration) -> bool {
        let deadline = elapsed() + within;
        loop {
            let expected = check::live_files(&self.shared.store, self.people.project);
            let diverged: Vec<_> = dirs.iter().filter(|(_, dir)| check::tree(dir) != expected).collect();
            if diverged.is_empty() {
                let seq = self.shared.store.snapshot().projects[&self.people.project].seq;
                self.shared.trace.note(format!("driver: {} agents converged at seq {seq}", dirs.len()));
                return true;
            }
            if elapsed() >= deadline {
                for (id, dir) in diverged {
                    let detail = check::difference(&check::tree(dir), &expected);
                    self.violate("1 convergence", format!("session {id} did not converge: {detail}"));
                }
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates a session and waits for it to run; `None` if it never does.
    async fn start_session(&self, transport: &Transport) -> Option<SessionView> {
        let body = json!({"project_id": self.people.project});
        let mut created = None;
        for _ in 0..30 {
            match self.call(transport, Method::POST, "/orchestrator/v1/sessions", &body).await {
                Some((201, view)) => {
                    created = view["id"].as_str().map(str::to_owned);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        let id = created?;
        self.wait_running(transport, &id).await
    }

    /// Polls a session until it runs; `None` if it ends or never does.
    async fn wait_running(&self, transport: &Transport, id: &str) -> Option<SessionView> {
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let path = format!("/orchestrator/v1/sessions/{id}");
            let Some((200, view)) = self.call(transport, Method::GET, &path, &Value::Null).await else { continue };
            let view: SessionView = serde_json::from_value(view).ok()?;
            match view.status {
                SessionStatus::Running => return Some(view),
                SessionStatus::Failed | SessionStatus::Stopped => return None,
                _ => {}
            }
        }
        None
    }

    async fn call(&self, transport: &Transport, method: Method, path: &str, body: &Value) -> Option<(u16, Value)> {
        let bearer = format!("Bearer {}", self.people.owner);
        let headers = [("apikey", self.people.anon.as_str()), ("authorization", bearer.as_str())];
        let request = transport::request(method, &format!("{API_URL}{path}"), &headers, body.to_string()).ok()?;
        let answer = transport.fetch(request, 1 << 20, Duration::from_secs(10)).await.ok()?;
        Some((answer.status.as_u16(), serde_json::from_slice(&answer.body).unwrap_or(Value::Null)))
    }

    fn violate(&self, invariant: &'static str, detail: String) {
        self.shared.trace.note(format!("VIOLATION {invariant}: {detail}"));
        self.violations.lock().unwrap_or_else(|e| e.into_inner()).push(Violation { invariant, detail });
    }
}

fn elapsed() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Watches every agent's directory as the simulation runs: whenever it looks, each tree must be
/// the project's tree at some seq no earlier than the one it last showed (invariants 2, 5, 6, 8:
/// nothing that was never written, no going back, bulks whole, the snapshot plus every later
/// change).
async fn watcher(shared: Shared, project: Uuid, violations: Arc<Mutex<Vec<Violation>>>) -> turmoil::Result {
    let mut history = check::History::default();
    let mut at: BTreeMap<PathBuf, i64> = BTreeMap::new();
    let mut reported = std::collections::BTreeSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        history.update(&shared.store, project);
        let Ok(entries) = std::fs::read_dir(&shared.sessions_dir) else { continue };
        let mut dirs: Vec<PathBuf> =
            entries.flatten().map(|e| e.path().join("project")).filter(|d| d.is_dir()).collect();
        dirs.sort();
        for dir in dirs {
            let digest = check::digest(&check::tree(&dir));
            let from = at.get(&dir).copied().unwrap_or(0);
            match history.first_match(&digest, from) {
                Some(seq) => {
                    at.insert(dir, seq);
                }
                None if reported.insert(dir.clone()) => {
                    let (invariant, what) = if history.matches_before(&digest, from) {
                        (
                            "5 an agent's last_seq never goes back",
                            format!("went back from seq {from} to an earlier tree"),
                        )
                    } else {
                        (
                            "2 nothing appears that was never written",
                            format!("holds a tree the project never had (last at seq {from})"),
                        )
                    };
                    let detail = format!("{}: {what}", dir.display());
                    shared.trace.note(format!("VIOLATION {invariant}: {detail}"));
                    violations.lock().unwrap_or_else(|e| e.into_inner()).push(Violation { invariant, detail });
                }
                None => {}
            }
        }
    }
}

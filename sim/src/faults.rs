//! The fault schedule of a seed, and what each fault does to the world. Which kinds of fault a
//! seed enables is itself drawn (swarm testing: some seeds only partition, some only drop, some
//! do everything), and so is the world's shape: one server or two, long or short token lives.

use crate::world::Config;
use fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S;
use std::time::Duration;

/// A fault of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at: Duration,
    pub kind: FaultKind,
    /// How long it lasts (a crash restarts when it ends).
    pub lasts: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The link between a host and a server is cut both ways.
    Partition { host: String, server: String },
    /// Nothing goes from `from` to `to`; the other way still works.
    OneWay { from: String, to: String },
    /// Messages between a host and a server are held, then all delivered at once.
    Hold { host: String, server: String },
    /// Messages take up to this long.
    Latency(Duration),
    /// A server crashes and starts again (its sockets gone; the data kept; the sessions it ran
    /// fail, by design: it no longer watches their agents).
    ServerRestart(String),
    /// A server is cut off from every agent and person (`hosts`) while it runs: an outage as the
    /// previews see it.
    ServerOutage { server: String, hosts: Vec<String> },
    /// An agent host crashes and comes back: the container restarts and rehydrates.
    AgentCrash(String),
    /// While it lasts, each broadcast is lost silently with this chance in percent (Supabase's
    /// `realtime.send` may lose them).
    DropBroadcasts(u32),
    /// One server's feed of broadcasts (the `pick`-th, in listening order) is lost, then regained
    /// with a resync: a lost LISTEN connection.
    LoseFeed(usize),
    /// An event delivered again, late: the one this many deliveries back.
    LateEvent(usize),
}

impl FaultKind {
    /// The hosts it touches (none: the whole world).
    pub fn lanes(&self) -> Vec<String> {
        match self {
            FaultKind::Partition { host, server } | FaultKind::Hold { host, server } => {
                vec![host.clone(), server.clone()]
            }
            FaultKind::OneWay { from, to } => vec![from.clone(), to.clone()],
            FaultKind::ServerRestart(host) | FaultKind::AgentCrash(host) => vec![host.clone()],
            FaultKind::ServerOutage { server, .. } => vec![server.clone()],
            _ => vec![],
        }
    }

    /// Whether streams may stall or broadcasts go missing, so that only heartbeats and the idle
    /// catch-up notice (convergence then takes longer).
    pub fn is_slow(&self) -> bool {
        matches!(
            self,
            FaultKind::Partition { .. }
                | FaultKind::ServerOutage { .. }
                | FaultKind::OneWay { .. }
                | FaultKind::Hold { .. }
                | FaultKind::Latency(_)
                | FaultKind::DropBroadcasts(_)
        )
    }
}

/// The world a seed draws: its shape and its faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// Server hosts: `server-0` and, on some seeds, `server-1`.
    pub servers: usize,
    /// How long container tokens live (short on some seeds, 66–180 s, so they expire mid-session
    /// unless the agent refreshes them). On half of those seeds one outage (an agent's partition,
    /// or a server cut off from everyone) outlasts the tokens: the agents must renew an expired
    /// token when the network is back, and catch up.
    pub token_ttl_s: u64,
    pub faults: Vec<Fault>,
}

/// Draws the world of `config` from `rng`.
pub fn draw(config: &Config, rng: &mut fastrand::Rng) -> Drawn {
    let servers = if config.servers == 0 { rng.usize(1..=2) } else { config.servers };
    let short_tokens = config.faults && rng.bool();
    let token_ttl_s = if short_tokens { rng.u64(66..180) } else { CONTAINER_TOKEN_MAX_TTL_S };
    let mut faults = if config.faults { draw_faults(config, servers, short_tokens, rng) } else { vec![] };
    if short_tokens {
        // From a stream of its own, so that every other draw of the seed stays as it was.
        let mut long = fastrand::Rng::with_seed(config.seed ^ LONG_OUTAGE_STREAM);
        if long.bool() {
            faults.push(long_outage(config, servers, token_ttl_s, &mut long));
            faults.sort_by_key(|f| f.at);
        }
    }
    Drawn { servers, token_ttl_s, faults }
}

/// Seeds the draw of an outage longer than the container tokens live.
const LONG_OUTAGE_STREAM: u64 = 0x6c6f_6e67_5f63_7574; // "long_cut"

/// An outage that lasts 5 to 30 s longer than a container token, from 8 to 15 s in: an agent
/// partitioned from a server, or a server cut off from every agent and person.
fn long_outage(config: &Config, servers: usize, token_ttl_s: u64, rng: &mut fastrand::Rng) -> Fault {
    let server = format!("server-{}", rng.usize(..servers));
    let kind = if rng.bool() {
        FaultKind::Partition { host: format!("agent-{}", rng.usize(..config.agents)), server }
    } else {
        FaultKind::ServerOutage { server, hosts: client_hosts(config) }
    };
    let lasts = Duration::from_secs(token_ttl_s + rng.u64(5..30));
    // Once the sessions run (an agent that cannot join at its start fails its session), while
    // the editors still write.
    Fault { at: Duration::from_millis(rng.u64(8_000..15_000)), kind, lasts }
}

/// The fault schedule: which kinds are enabled is drawn first, then up to five faults of them.
fn draw_faults(config: &Config, servers: usize, short_tokens: bool, rng: &mut fastrand::Rng) -> Vec<Fault> {
    let enabled: Vec<bool> = (0..9).map(|_| rng.bool()).collect();
    let hosts = client_hosts(config);
    let mut kinds = Vec::new();
    for _ in 0..rng.usize(1..6) {
        let kind = rng.usize(0..9);
        if !enabled[kind] {
            continue;
        }
        let host = hosts[rng.usize(..hosts.len())].clone();
        let server = format!("server-{}", rng.usize(..servers));
        kinds.push(match kind {
            0 => FaultKind::Partition { host, server },
            1 if rng.bool() => FaultKind::OneWay { from: host, to: server },
            1 => FaultKind::OneWay { from: server, to: host },
            2 => FaultKind::Hold { host, server },
            3 => FaultKind::Latency(Duration::from_millis(rng.u64(100..2_000))),
            // A restarted instance fails the sessions it ran, by design (it no longer watches
            // their agents); with short tokens their agents would end soon after, so these
            // seeds keep their sessions (and the restart faults stay with long tokens).
            4 if short_tokens => continue,
            4 => FaultKind::ServerRestart(server),
            5 => FaultKind::AgentCrash(format!("agent-{}", rng.usize(..config.agents))),
            6 => FaultKind::DropBroadcasts(rng.u32(10..60)),
            7 => FaultKind::LoseFeed(rng.usize(..servers)),
            _ => FaultKind::LateEvent(rng.usize(1..6)),
        });
    }
    let mut faults: Vec<Fault> = kinds
        .into_iter()
        .map(|kind| Fault {
            // Late repeats come while editors still write (afterwards they would repeat old news).
            at: Duration::from_millis(if matches!(kind, FaultKind::LateEvent(_)) {
                rng.u64(1_000..10_000)
            } else {
                rng.u64(1_000..15_000)
            }),
            lasts: Duration::from_millis(rng.u64(500..20_000)),
            kind,
        })
        .collect();
    faults.sort_by_key(|f| f.at);
    without_held_one_ways(faults)
}

/// Every agent host (the late session's too) and every person's host.
fn client_hosts(config: &Config) -> Vec<String> {
    let mut hosts: Vec<String> = (0..=config.agents).map(|i| format!("agent-{i}")).collect();
    hosts.extend((0..config.editors + config.viewers).map(|i| format!("editor-{i}")));
    hosts
}

/// turmoil cannot hold a link that is also cut one way: of two such faults on one link, the
/// later goes.
fn without_held_one_ways(faults: Vec<Fault>) -> Vec<Fault> {
    let mut kept: Vec<Fault> = Vec::new();
    for fault in faults {
        let pair = |k: &FaultKind| match k {
            FaultKind::Hold { host, server } => Some((host.clone(), server.clone(), true)),
            FaultKind::OneWay { from, to } if from.starts_with("server") => Some((to.clone(), from.clone(), false)),
            FaultKind::OneWay { from, to } => Some((from.clone(), to.clone(), false)),
            _ => None,
        };
        let clashes = pair(&fault.kind).is_some_and(|(h, s, held)| {
            kept.iter().any(|k| pair(&k.kind).is_some_and(|(h2, s2, held2)| h == h2 && s == s2 && held != held2))
        });
        if !clashes {
            kept.push(fault);
        }
    }
    kept
}

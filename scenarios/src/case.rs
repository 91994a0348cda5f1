//! A scenario case as data: who takes part, how the world starts, and the steps in order, each
//! with the line it came from and, optionally, what its outcome must begin with.

use std::fmt;
use std::time::Duration;

/// One parsed case file.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The file's name without `.scenario` (the transcript's name).
    pub name: String,
    pub title: String,
    pub setup: Setup,
    pub actors: Vec<Actor>,
    pub steps: Vec<Step>,
}

impl Case {
    pub fn actor(&self, name: &str) -> Option<&Actor> {
        self.actors.iter().find(|a| a.name == name)
    }

    /// The project's owner (a case has exactly one).
    pub fn owner(&self) -> &Actor {
        self.actors.iter().find(|a| a.role == Role::Owner).expect("the parser requires an owner")
    }
}

/// How the world starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Server instances sharing one database (1 or 2).
    pub servers: usize,
    /// Container tokens' lifetime (`None`: the orchestrator's 15 minutes).
    pub container_token_ttl: Option<Duration>,
    pub flags: Flags,
    /// A fixture project the owner loads before the first step.
    pub fixture: Option<(String, u64)>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup { servers: 1, container_token_ttl: None, flags: Flags::default(), fixture: None }
    }
}

/// The plan's flags (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// `FSYNC_USE_SNAPSHOT_HYDRATION` (the servers').
    pub snapshot_hydration: bool,
    /// `FSYNC_KEEP_CLIENT_BROADCAST` (the servers').
    pub client_broadcast: bool,
    /// `FSYNC_USE_RPC` (the people's clients): off, `upsert` and `delete` are table writes on
    /// `legacy_project_files`, as the unmigrated frontend makes them.
    pub rpc: bool,
}

impl Default for Flags {
    /// The new paths on (what scenarios mostly exercise); a case turns them off by name.
    fn default() -> Flags {
        Flags { snapshot_hydration: true, client_broadcast: false, rpc: true }
    }
}

/// A flag's name in case files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    SnapshotHydration,
    ClientBroadcast,
    Rpc,
}

impl Flag {
    pub const NAMES: &'static str = "snapshot-hydration, client-broadcast, rpc";

    pub fn parse(word: &str) -> Option<Flag> {
        match word {
            "snapshot-hydration" => Some(Flag::SnapshotHydration),
            "client-broadcast" => Some(Flag::ClientBroadcast),
            "rpc" => Some(Flag::Rpc),
            _ => None,
        }
    }

    pub fn set(self, flags: &mut Flags, on: bool) {
        match self {
            Flag::SnapshotHydration => flags.snapshot_hydration = on,
            Flag::ClientBroadcast => flags.client_broadcast = on,
            Flag::Rpc => flags.rpc = on,
        }
    }

    /// Whether flipping it restarts the servers (a server flag), or only changes how the
    /// people's clients write.
    pub fn restarts_servers(self) -> bool {
        self != Flag::Rpc
    }
}

/// A person in the case and what they are to the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Editor,
    Viewer,
    /// Signed in, but not a member.
    Outsider,
}

impl Role {
    pub fn parse(word: &str) -> Option<Role> {
        match word {
            "owner" => Some(Role::Owner),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            "outsider" => Some(Role::Outsider),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Outsider => "outsider",
        }
    }
}

/// One step: what to do, from which line, and what its outcome must begin with.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub line: usize,
    /// The step as written (without its expectation), for the transcript.
    pub text: String,
    pub action: Action,
    pub expect: Option<String>,
}

/// `expected_version` as a case writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Not sent: last writer wins.
    Any,
    /// `expect new`: `0`, only if the path has no live file.
    New,
    Version(i32),
}

/// One entry of a bulk write.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkEntry {
    Upsert { path: String, content: String, file_type: String, expect: Expected },
    Delete { path: String, expect: Expected },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Upsert {
        actor: String,
        path: String,
        content: String,
        file_type: String,
        expect: Expected,
    },
    Delete {
        actor: String,
        path: String,
        expect: Expected,
    },
    Bulk {
        actor: String,
        entries: Vec<BulkEntry>,
    },
    /// Upload a generated PNG to `project-files` and record it with `upsert_project_binary`.
    Binary {
        actor: String,
        path: String,
        width: u32,
        height: u32,
    },
    /// Sign the object behind a binary file; the URL is kept as `link`.
    Sign {
        actor: String,
        path: String,
        expires: Duration,
        link: String,
    },
    /// Download a kept signed URL with no key.
    Fetch {
        link: String,
    },
    /// `list_current_files` as the actor.
    Read {
        actor: String,
    },
    /// A session started by `actor` through server `server`; `held`: its agent is not launched
    /// until `release`; `deaf`: its agent never hears the orchestrator's stop (a container the
    /// orchestrator cannot reach), so only the network tells it its session ended.
    StartSession {
        session: String,
        actor: String,
        server: usize,
        held: bool,
        deaf: bool,
    },
    /// Waits until the session's agent has ended; the tree it held then.
    WaitGone {
        session: String,
    },
    /// `remove_project_member` as `actor`, of `member` (themselves: they leave).
    RemoveMember {
        actor: String,
        member: String,
    },
    Release {
        session: String,
    },
    /// Waits until the session reads `status` (running, or behind: its agent stopped following).
    WaitFor {
        session: String,
        status: fsync_protocol::snapshot::SessionStatus,
    },
    StopSession {
        session: String,
    },
    /// The container token of a session tries to write.
    ContainerUpsert {
        session: String,
        path: String,
        content: String,
    },
    /// Every agent's connections to the servers are cut (dropped, refused) until `heal`.
    CutAgents,
    HealAgents,
    /// Every server restarts with the flag set (a rollout step, or its rollback).
    SetFlag {
        flag: Flag,
        on: bool,
    },
    Wait(Duration),
    /// Until every live session's tree is its project's and every event has been seen.
    Quiesce,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Any => f.write_str("any"),
            Expected::New => f.write_str("new"),
            Expected::Version(n) => write!(f, "{n}"),
        }
    }
}

//! The orchestrator (DESIGN §8, §9, plan 2.2): preview sessions.
//!
//! `POST /orchestrator/v1/sessions {project_id}` with a member's token creates a session and
//! starts it in the background: build or reuse the snapshot, sign its URL, mint a container token
//! (at most 15 minutes), and spawn `fsync-agent` with a cleared environment holding exactly
//! `PROJECT_ID`, `SESSION_ID`, `SNAPSHOT_URL`, `REALTIME_TOKEN` and `FSYNC_API_URL`, in a
//! directory of its own. The agent reports `hydrating`, `running` or `failed` with its own
//! container token, fetches its manifest, and refreshes its token here. An agent that exits
//! while its session is live fails the session with the reason (its report, or its exit status
//! and last line of stderr). `DELETE` stops the agent (SIGTERM, then SIGKILL) and removes the
//! directory.
//!
//! Agents start through a [`Launcher`]: a child process ([`ProcessLauncher`], what `serve`
//! does by default), a Docker container of the preview image ([`DockerLauncher`], what `serve`
//! does with `FSYNC_AGENT_LAUNCHER=docker`, and production), or an in-process task running the
//! same agent code (`fsync_agent::launcher`). Sessions
//! are recorded in the database (any instance answers for any session) and run by the
//! instance that started their agent, which hears at once when a session it runs is stopped
//! anywhere ([`lifecycle`]). The registry holds at most [`MAX_SESSIONS`]; a session that ended is
//! forgotten [`FORGET_AFTER`] later.

pub mod docker;
pub mod http;
pub mod lifecycle;
pub mod ports;
mod process;
pub mod registry;
mod start;

pub use docker::{DockerConfig, DockerLauncher};
pub use process::ProcessLauncher;
pub use registry::{Orchestrator, OrchestratorConfig, FORGET_AFTER, MAX_SESSIONS, MAX_SESSIONS_PER_USER};

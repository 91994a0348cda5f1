//! Preview sessions as the source of truth keeps them (issue 13, durable sessions): every
//! instance writes through what it knows of the sessions it runs, so any instance answers for
//! any session, and an instance that restarts fails the sessions it can no longer watch.

use crate::error::{ApiError, StatusCode};
use fsync_protocol::snapshot::SessionView;
use uuid::Uuid;

/// Why a session cannot be recorded: its project was deleted after its starter's access was
/// checked.
pub fn project_gone(project: Uuid) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "PT404", format!("project {project} not found"))
}

/// How a live session's record ended, as every instance hears of it ([`crate::data::Delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Stopped: by `DELETE` through any instance, or its starter's removal from the project.
    Stopped,
    /// Failed (an instance that restarted fails the sessions it no longer watches).
    Failed,
    /// Its record is gone with its project.
    Deleted,
}

impl SessionEnd {
    /// The word the records' notification carries (`0010_session_lifecycle.sql`).
    pub fn parse(word: &str) -> Option<SessionEnd> {
        match word {
            "stopped" => Some(SessionEnd::Stopped),
            "failed" => Some(SessionEnd::Failed),
            "deleted" => Some(SessionEnd::Deleted),
            _ => None,
        }
    }

    /// Whether it revokes the session: its container token, channel and agent go at once. A
    /// failed session's agent may still serve its preview, and keeps its token until `exp`.
    pub fn revokes(self) -> bool {
        matches!(self, SessionEnd::Stopped | SessionEnd::Deleted)
    }
}

/// Why a session whose project was deleted ended.
pub const PROJECT_DELETED: &str = "the project was deleted";

/// One session's record.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub view: SessionView,
    /// Who started it: a member's user id, or `service_role`.
    pub started_by: String,
    /// The server instance that runs and watches its agent (`OrchestratorConfig::instance`).
    pub instance: String,
    /// When it became final, in wall seconds (it is pruned a while later).
    pub ended_at_s: Option<u64>,
}

impl SessionRecord {
    /// Whether it is still starting, hydrating or running.
    pub fn is_live(&self) -> bool {
        !self.view.status.is_final()
    }
}

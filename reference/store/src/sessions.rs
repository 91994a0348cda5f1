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

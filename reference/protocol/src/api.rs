//! The shapes of the SQL API (DESIGN §6) as they travel over PostgREST: RPC arguments, results,
//! and the PostgREST error body.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The RPC functions of the SQL API, by name.
pub mod rpc {
    pub const UPSERT_PROJECT_FILE: &str = "upsert_project_file";
    pub const DELETE_PROJECT_FILE: &str = "delete_project_file";
    pub const LIST_CURRENT_FILES: &str = "list_current_files";
    pub const BULK_UPSERT_PROJECT_FILES: &str = "bulk_upsert_project_files";
    pub const LIST_CHANGES_SINCE: &str = "list_changes_since";
    pub const ENSURE_USER_PROFILE: &str = "ensure_user_profile";
    pub const CREATE_PROJECT: &str = "create_project";
    pub const ADD_PROJECT_MEMBER: &str = "add_project_member";
    pub const REMOVE_PROJECT_MEMBER: &str = "remove_project_member";
}

/// A PostgREST error body: `{code, message, details, hint}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
}

impl ErrorBody {
    /// How long a rate-limited caller should wait (the `details` of a `PT429`,
    /// [`RateLimitDetails`]).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let details: RateLimitDetails = serde_json::from_str(self.details.as_deref()?).ok()?;
        Some(std::time::Duration::from_millis(details.retry_after_ms))
    }
}

/// The `details` of a 429 (SQLSTATE `PT429`): when the caller's next call would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitDetails {
    pub retry_after_ms: u64,
}

/// The `details` of a 409 version conflict (SQLSTATE `PT409`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictDetails {
    pub file_path: String,
    pub expected_version: i32,
    /// The head's version; 0 when the path was never written.
    pub current_version: i32,
    /// Whether the head is a tombstone.
    pub deleted: bool,
}

/// `upsert_project_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertResult {
    pub file_path: String,
    pub version: i32,
    pub content_hash: String,
    pub seq: i64,
    /// True when the content equalled the head: nothing was written and no event was sent.
    pub noop: bool,
}

/// `delete_project_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResult {
    pub file_path: String,
    pub version: i32,
    pub seq: i64,
    /// True when the file was already deleted.
    pub noop: bool,
}

/// One row of `list_current_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentFile {
    pub file_path: String,
    pub file_type: String,
    pub content: Option<String>,
    pub content_hash: Option<String>,
    pub version: i32,
    pub updated_at: String,
    pub seq: i64,
}

/// One entry of a `bulk_upsert_project_files` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkEntry {
    pub file_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
}

impl BulkEntry {
    /// An entry that writes `content` to `file_path`.
    pub fn upsert(file_path: impl Into<String>, file_type: impl Into<String>, content: impl Into<String>) -> Self {
        BulkEntry {
            file_path: file_path.into(),
            file_type: Some(file_type.into()),
            content: Some(content.into()),
            expected_version: None,
            delete: false,
        }
    }

    /// An entry that deletes `file_path`.
    pub fn delete(file_path: impl Into<String>) -> Self {
        BulkEntry { file_path: file_path.into(), file_type: None, content: None, expected_version: None, delete: true }
    }

    /// The same entry with a compare-and-set version.
    pub fn expecting(mut self, version: Option<i32>) -> Self {
        self.expected_version = version;
        self
    }
}

/// `bulk_upsert_project_files` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkResult {
    pub seq: i64,
    pub files: Vec<BulkFileResult>,
}

/// One file of a bulk result, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFileResult {
    pub file_path: String,
    pub version: i32,
    pub content_hash: Option<String>,
    pub deleted: bool,
    pub noop: bool,
}

/// `list_changes_since` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The project's seq the changes bring a consumer up to.
    pub seq: i64,
    pub changes: Vec<Change>,
}

/// The latest row of one path written after the requested seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub file_path: String,
    pub file_type: String,
    pub content: Option<String>,
    pub content_hash: Option<String>,
    pub version: i32,
    pub deleted: bool,
    pub seq: i64,
}

/// `create_project` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Uuid,
    pub seq: i64,
}

/// `ensure_user_profile` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub id: Uuid,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// A member's role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Editor,
    Viewer,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Editor => "editor",
            MemberRole::Viewer => "viewer",
        }
    }
}

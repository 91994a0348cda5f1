//! Snapshots and preview sessions (DESIGN §8, §9): the manifest that describes a snapshot zip,
//! the limits an agent enforces while extracting one, and the orchestrator's session records.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The bucket that holds snapshot zips; only the service role writes it.
pub const SNAPSHOT_BUCKET: &str = "project-snapshots";
/// The bucket that holds binary file contents, content-addressed: `{project_id}/{content_hash}`.
pub const FILES_BUCKET: &str = "project-files";

/// Where binary content with `content_hash` lives in [`FILES_BUCKET`].
pub fn binary_object_name(project: Uuid, content_hash: &str) -> String {
    format!("{project}/{content_hash}")
}

/// The id of the snapshot of `seq`: one project state, one snapshot (the zip is deterministic).
pub fn snapshot_id(seq: i64) -> String {
    format!("seq-{seq}")
}

/// The object name of a snapshot zip in [`SNAPSHOT_BUCKET`].
pub fn snapshot_zip_name(project: Uuid, snapshot_id: &str) -> String {
    format!("{project}/{snapshot_id}.zip")
}

/// The object name of a snapshot's manifest in [`SNAPSHOT_BUCKET`] (written after the zip, so
/// a manifest always names a complete zip).
pub fn snapshot_manifest_name(project: Uuid, snapshot_id: &str) -> String {
    format!("{project}/{snapshot_id}.json")
}

/// The project, snapshot id and `seq` a [`SNAPSHOT_BUCKET`] object name (a zip or a manifest)
/// names; `None` for any other name.
pub fn parse_snapshot_object_name(name: &str) -> Option<(Uuid, String, i64)> {
    let (project, file) = name.split_once('/')?;
    let project = Uuid::parse_str(project).ok().filter(|p| p.to_string() == project)?;
    let id = file.strip_suffix(".zip").or_else(|| file.strip_suffix(".json"))?;
    let seq: i64 = id.strip_prefix("seq-")?.parse().ok()?;
    (seq >= 0 && snapshot_id(seq) == id).then(|| (project, id.to_owned(), seq))
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub version: i32,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub content_hash: String,
    /// Bytes.
    pub size: u64,
}

/// What a snapshot zip holds: every live file of the project at `seq`, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub project_id: Uuid,
    pub seq: i64,
    pub snapshot_id: String,
    pub files: Vec<ManifestFile>,
    /// Lowercase hex SHA-256 of the whole zip.
    pub zip_sha256: String,
}

impl Manifest {
    /// Total bytes of every file.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// What `POST /functions/v1/build-project-snapshot` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    pub snapshot_id: String,
    /// An absolute signed download URL of the zip.
    pub signed_url: String,
    pub manifest: Manifest,
    /// Whether a stored snapshot of the same `seq` was reused.
    pub reused: bool,
}

/// Bounds an agent enforces on a snapshot zip before and while extracting it (zip-bomb guards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most entries.
    pub max_files: usize,
    /// Largest uncompressed file.
    pub max_file_bytes: u64,
    /// Largest uncompressed total.
    pub max_total_bytes: u64,
    /// Largest uncompressed / compressed ratio of an entry bigger than `ratio_floor_bytes`.
    pub max_ratio: u64,
    /// Entries up to this size are not ratio-checked (tiny repetitive files compress very well).
    pub ratio_floor_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_files: 100_000,
            max_file_bytes: 256 * 1024 * 1024,
            max_total_bytes: 4 * 1024 * 1024 * 1024,
            max_ratio: 250,
            ratio_floor_bytes: 1024 * 1024,
        }
    }
}

/// Longest lifetime of a container token (DESIGN §8).
pub const CONTAINER_TOKEN_MAX_TTL_S: u64 = 15 * 60;

/// Where a preview session is: `starting → hydrating → running`, `running ⇄ behind` while it
/// lives, and then `failed` or `stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Starting,
    Hydrating,
    Running,
    /// Live, but its agent stopped following the project: it has not reported for
    /// [`AGENT_SILENT_AFTER_S`], or it reported that its realtime feed is down. It reads
    /// `running` again once the agent reports that it follows.
    Behind,
    Failed,
    Stopped,
}

/// How often a following agent reports to the orchestrator (`POST .../lag`, a heartbeat even
/// with no lag to report).
pub const AGENT_REPORT_EVERY_MS: u64 = 1_000;
/// A running session whose agent has not reported for this long reads `behind`.
pub const AGENT_SILENT_AFTER_S: u64 = 5;

impl SessionStatus {
    /// Whether the session has ended.
    pub fn is_final(self) -> bool {
        matches!(self, SessionStatus::Failed | SessionStatus::Stopped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::Hydrating => "hydrating",
            SessionStatus::Running => "running",
            SessionStatus::Behind => "behind",
            SessionStatus::Failed => "failed",
            SessionStatus::Stopped => "stopped",
        }
    }
}

/// A preview session as `GET /orchestrator/v1/sessions/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub status: SessionStatus,
    pub reason: Option<String>,
    pub project_dir: String,
    pub agent_pid: Option<u32>,
    /// The snapshot the agent hydrates from (absent on the legacy path).
    pub snapshot_id: Option<String>,
    /// Milliseconds per phase (`snapshot`, `spawn`, `join`, `download`, `extract`, `catch_up`,
    /// `exec`, `hydrate`, `total`); the agent reports its own phases.
    pub timings_ms: BTreeMap<String, f64>,
    /// Whether the agent hydrates from the snapshot (`FSYNC_USE_SNAPSHOT_HYDRATION`).
    pub snapshot_hydration: bool,
    /// Where a browser sees the preview: the session's dev server (`--exec`), as its launcher
    /// publishes it; absent when the session runs none. It answers once the session runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
}

impl SessionView {
    /// A session just asked for: `starting`, with no agent, snapshot or timings yet.
    pub fn starting(id: Uuid, project_id: Uuid, project_dir: String, snapshot_hydration: bool) -> SessionView {
        SessionView {
            id,
            project_id,
            status: SessionStatus::Starting,
            reason: None,
            project_dir,
            agent_pid: None,
            snapshot_id: None,
            timings_ms: BTreeMap::new(),
            snapshot_hydration,
            preview_url: None,
        }
    }
}

/// What an agent reports with `POST /orchestrator/v1/sessions/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub status: SessionStatus,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub timings_ms: BTreeMap<String, f64>,
}

/// What an agent reports with `POST /orchestrator/v1/sessions/{id}/lag`: for each live event it
/// applied since its last report, milliseconds from the write (the event's `timestamp`) to the
/// change on disk (at most [`crate::limits::MAX_LAG_SAMPLES`]).
///
/// It is also the agent's heartbeat, sent every [`AGENT_REPORT_EVERY_MS`] while it follows:
/// `following` says whether its realtime feed is joined (absent: an older agent, taken as
/// following) and `seq` where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LagReport {
    pub applied_lag_ms: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

/// What `GET /orchestrator/v1/sessions/{id}/snapshot` gives the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// `None` on the legacy path (hydrate file by file through the API).
    pub manifest: Option<Manifest>,
    /// Where to download it, when not from the URL the agent was launched with: a container that
    /// restarts rehydrates from a fresh snapshot, never from one older than what it showed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What `POST /orchestrator/v1/sessions/{id}/token` gives the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The environment variables the orchestrator gives an agent, and nothing else.
pub const AGENT_ENV: [&str; 5] = ["PROJECT_ID", "SESSION_ID", "SNAPSHOT_URL", "REALTIME_TOKEN", "FSYNC_API_URL"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_object_names_parse_back_to_their_project_id_and_seq() {
        let project = Uuid::from_u128(0xabcd_ef01_2345_6789);
        for name in [snapshot_zip_name(project, &snapshot_id(42)), snapshot_manifest_name(project, &snapshot_id(42))] {
            assert_eq!(parse_snapshot_object_name(&name), Some((project, "seq-42".to_owned(), 42)), "{name}");
        }
        let other = [
            String::new(),
            "seq-1.zip".to_owned(),
            format!("{project}/seq-1.tar"),
            format!("{project}/seq--1.zip"),
            format!("{project}/seq-01.zip"),
            format!("{project}/seq-x.zip"),
            format!("{project}/a/seq-1.zip"),
            format!("{}/seq-1.zip", project.to_string().to_uppercase()),
            "not-a-uuid/seq-1.zip".to_owned(),
        ];
        for name in other {
            assert_eq!(parse_snapshot_object_name(&name), None, "{name}");
        }
    }
}

//! The server-authored Realtime events on `realtime:project:{uuid}` (DESIGN §7), and the file
//! changes a consumer applies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `file:update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUpdate {
    pub file_path: String,
    pub file_type: String,
    /// `None` when the content was above the inline limit (`content_omitted`).
    pub content: Option<String>,
    #[serde(default)]
    pub content_omitted: bool,
    pub content_hash: String,
    pub version: i32,
    pub seq: i64,
    pub timestamp: String,
}

/// `file:delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDelete {
    pub file_path: String,
    pub version: i32,
    pub seq: i64,
    pub timestamp: String,
}

/// `bulk:apply`: the files of one bulk write; contents come from `list_changes_since(seq - 1)`.
/// A long file list is left out (`files: [], files_omitted: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkApply {
    pub seq: i64,
    pub files: Vec<BulkFile>,
    #[serde(default)]
    pub files_omitted: bool,
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFile {
    pub file_path: String,
    pub version: i32,
    pub content_hash: Option<String>,
    pub deleted: bool,
}

/// One project event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectEvent {
    Update(FileUpdate),
    Delete(FileDelete),
    Bulk(BulkApply),
}

impl ProjectEvent {
    pub const UPDATE: &'static str = "file:update";
    pub const DELETE: &'static str = "file:delete";
    pub const BULK: &'static str = "bulk:apply";

    /// Whether `event` is one of the names only the server sends.
    pub fn is_server_event(event: &str) -> bool {
        matches!(event, Self::UPDATE | Self::DELETE | Self::BULK)
    }

    /// Parses an event by its broadcast name; `None` for names that are not project events.
    /// The payload is read in place (no copy of it first: a large `bulk:apply` is mostly copying).
    pub fn parse(event: &str, payload: &Value) -> Option<Result<ProjectEvent, serde_json::Error>> {
        let parsed = match event {
            Self::UPDATE => FileUpdate::deserialize(payload).map(ProjectEvent::Update),
            Self::DELETE => FileDelete::deserialize(payload).map(ProjectEvent::Delete),
            Self::BULK => BulkApply::deserialize(payload).map(ProjectEvent::Bulk),
            _ => return None,
        };
        Some(parsed)
    }

    pub fn seq(&self) -> i64 {
        match self {
            ProjectEvent::Update(e) => e.seq,
            ProjectEvent::Delete(e) => e.seq,
            ProjectEvent::Bulk(e) => e.seq,
        }
    }

    /// When the write was made, as the database wrote it (see [`crate::time::parse_timestamp`]).
    pub fn timestamp(&self) -> &str {
        match self {
            ProjectEvent::Update(e) => &e.timestamp,
            ProjectEvent::Delete(e) => &e.timestamp,
            ProjectEvent::Bulk(e) => &e.timestamp,
        }
    }
}

/// One file's change, as a consumer applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Write { path: String, file_type: String, content: Option<String>, content_hash: Option<String>, version: i32 },
    Delete { path: String, version: i32 },
}

impl FileChange {
    pub fn path(&self) -> &str {
        match self {
            FileChange::Write { path, .. } | FileChange::Delete { path, .. } => path,
        }
    }

    /// The change a `list_changes_since` row stands for.
    pub fn from_change(change: crate::api::Change) -> FileChange {
        if change.deleted {
            FileChange::Delete { path: change.file_path, version: change.version }
        } else {
            FileChange::Write {
                path: change.file_path,
                file_type: change.file_type,
                content: change.content,
                content_hash: change.content_hash,
                version: change.version,
            }
        }
    }
}

/// The `timestamp` of an event's payload (JSON text) as time since the Unix epoch, found
/// without parsing the whole payload (which may carry a file's content): the first
/// `"timestamp":` key is the top-level one, since a string value inside cannot hold an unescaped
/// quote.
pub fn payload_timestamp(payload_json: &str) -> Option<std::time::Duration> {
    let value = top_level(payload_json, "timestamp")?.strip_prefix('"')?;
    let (text, _) = value.split_once('"')?;
    crate::time::parse_timestamp(text)
}

/// The `seq` of an event's payload (JSON text), found as [`payload_timestamp`] finds its time.
pub fn payload_seq(payload_json: &str) -> Option<i64> {
    let value = top_level(payload_json, "seq")?;
    let end = value.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(value.len());
    value[..end].parse().ok()
}

/// The text after the first `"key":` of `json` (its value and what follows). No key of an event
/// repeats below the top level with the same name and no string holds an unescaped quote, so the
/// first is the top-level one.
fn top_level<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let (_, after) = json.split_once(&format!("\"{key}\":"))?;
    Some(after.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_three_events() {
        let update = json!({"file_path": "a", "file_type": "text", "content": "x", "content_omitted": false,
            "content_hash": "h", "version": 1, "seq": 4, "timestamp": "t", "id": "injected by realtime.send"});
        assert_eq!(ProjectEvent::parse("file:update", &update).unwrap().unwrap().seq(), 4);
        let delete = json!({"file_path": "a", "version": 2, "seq": 5, "timestamp": "t"});
        assert!(matches!(ProjectEvent::parse("file:delete", &delete), Some(Ok(ProjectEvent::Delete(_)))));
        let bulk = json!({"seq": 6, "files": [{"file_path": "a", "version": 3, "content_hash": null, "deleted": true}], "timestamp": "t"});
        assert!(matches!(ProjectEvent::parse("bulk:apply", &bulk), Some(Ok(ProjectEvent::Bulk(_)))));
        assert!(ProjectEvent::parse("cursor", &json!({})).is_none());
        assert!(ProjectEvent::parse("file:update", &json!({"seq": "x"})).unwrap().is_err());
    }

    #[test]
    fn the_payload_timestamp_is_the_top_level_one_whatever_the_content_holds() {
        let at = std::time::Duration::from_secs(1_796_307_171);
        // PostgreSQL's jsonb text (", " and ": ", keys by length) and serde's compact form.
        let jsonb = r#"{"seq": 3, "content": "{\"timestamp\": \"1999-01-01T00:00:00Z\"}", "timestamp": "2026-12-03T14:12:51+00:00"}"#;
        assert_eq!(payload_timestamp(jsonb), Some(at));
        let compact = json!({"content": "\"timestamp\":\"x\"", "timestamp": "2026-12-03T14:12:51Z"}).to_string();
        assert_eq!(payload_timestamp(&compact), Some(at));
        assert_eq!(payload_timestamp(r#"{"seq": 1, "timestamp": "t"}"#), None, "the model's logical time");
        assert_eq!(payload_timestamp(r#"{"seq": 1}"#), None);
        assert_eq!(payload_seq(jsonb), Some(3));
        assert_eq!(payload_seq(r#"{"files": [{"version": 2}], "seq":12,"x":1}"#), Some(12));
        assert_eq!(payload_seq(r#"{"content": "\"seq\": 9"}"#), None);
    }
}

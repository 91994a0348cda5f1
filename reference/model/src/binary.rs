//! `upsert_project_binary` (`0005_binary_files.sql`): a file whose bytes are already in the
//! `project-files` bucket as `{project}/{sha256}` is recorded by its hash; its row holds no content,
//! the object's size and its storage key, and its event leaves the content out.

use crate::state::{
    check_expected, check_expected_version, check_file_type, check_path_arg, invalid, message, Caller, Outcome, State,
};
use fsync_protocol::snapshot::FILES_BUCKET;
use fsync_store::error::ApiError;
use serde_json::{json, Value};
use uuid::Uuid;

/// Where a recorded binary's bytes are, and how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// `project-files/{project}/{sha256}`.
    pub key: String,
    pub size: i64,
}

impl State {
    pub fn upsert_project_binary(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        path: Option<&str>,
        hash: Option<&str>,
        file_type: Option<&str>,
        expected: Option<i32>,
    ) -> Result<Outcome, ApiError> {
        check_path_arg(path, "p_file_path")?;
        check_file_type(file_type, "p_file_type")?;
        let Some(hash) = hash.filter(|h| fsync_protocol::hash::is_sha256_hex(h)) else {
            return Err(invalid("p_content_hash must be the lowercase hex SHA-256 of the bytes"));
        };
        check_expected_version(expected, "expected_version")?;
        let (project, role) = self.require_access(caller, project, true)?;
        let (path, file_type) = (path.unwrap_or_default(), file_type.unwrap_or_default());
        let name = format!("{project}/{hash}");
        let Some(object) = self.objects.get(&(FILES_BUCKET.to_owned(), name.clone())) else {
            return Err(ApiError::from_sqlstate(
                "22023",
                &format!("no object {FILES_BUCKET}/{name}: upload the bytes before recording the file"),
                None,
                Some("POST /storage/v1/object/project-files/{project_id}/{sha256}, then call upsert_project_binary"),
                true,
            ));
        };
        let size = match object.metadata.get("size") {
            Some(Value::Number(n)) => n.as_i64().unwrap_or_default(),
            Some(Value::String(s)) => s.trim().parse().unwrap_or_default(),
            _ => 0,
        };
        let head = self.head(project, path);
        if let Some(h) = head.filter(|h| {
            !h.deleted && h.content.is_none() && h.content_hash.as_deref() == Some(hash) && h.file_type == file_type
        }) {
            let result =
                json!({"file_path": path, "version": h.version, "content_hash": hash, "seq": h.seq, "noop": true});
            return Ok(Outcome { result, messages: vec![] });
        }
        check_expected(path, expected, head)?;
        let writer = self.writer(caller, project, role)?;
        let seq = self.next_seq(project);
        let stored = Stored { key: format!("{FILES_BUCKET}/{name}"), size };
        let row = self.write_binary(project, path, file_type, hash, stored, writer, seq);
        let event = message(
            self.ids.0.uuid(),
            project,
            "file:update",
            json!({
                "file_path": path, "file_type": row.file_type, "content": null, "content_omitted": true,
                "content_hash": row.content_hash, "version": row.version, "seq": seq, "timestamp": row.updated_at,
            }),
        );
        let result = json!({"file_path": path, "version": row.version, "content_hash": row.content_hash, "seq": seq, "noop": false});
        Ok(Outcome { result, messages: vec![event] })
    }
}

//! The file RPCs of `0003_rpcs.sql`: `upsert_project_file`, `delete_project_file`,
//! `list_current_files` and `list_changes_since`, with the same checks in the same order.

use crate::state::{
    check_content, check_expected, check_expected_version, check_file_type, check_path_arg, err, invalid, message,
    Caller, Outcome, Row, State,
};
use fsync_protocol::content_hash;
use fsync_protocol::limits::MAX_INLINE_EVENT_BYTES;
use fsync_store::error::ApiError;
use serde_json::{json, Value};
use uuid::Uuid;

impl State {
    pub fn upsert_project_file(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        path: Option<&str>,
        content: Option<&str>,
        file_type: Option<&str>,
        expected: Option<i32>,
    ) -> Result<Outcome, ApiError> {
        check_path_arg(path, "p_file_path")?;
        check_file_type(file_type, "p_file_type")?;
        check_content(content, "p_content")?;
        check_expected_version(expected, "expected_version")?;
        let (project, role) = self.require_access(caller, project, true)?;
        let (path, content, file_type) =
            (path.unwrap_or_default(), content.unwrap_or_default(), file_type.unwrap_or_default());
        let hash = content_hash(content);
        let head = self.head(project, path);
        if let Some(h) =
            head.filter(|h| !h.deleted && h.content_hash.as_deref() == Some(hash.as_str()) && h.file_type == file_type)
        {
            let result =
                json!({"file_path": path, "version": h.version, "content_hash": hash, "seq": h.seq, "noop": true});
            return Ok(Outcome { result, messages: vec![] });
        }
        check_expected(path, expected, head)?;
        let writer = self.writer(caller, project, role)?;
        let seq = self.next_seq(project);
        let row = self.write_version(project, path, Some(file_type), Some(content), false, writer, seq);
        let inline = content.len() <= MAX_INLINE_EVENT_BYTES;
        let event = message(
            self.ids.0.uuid(),
            project,
            "file:update",
            json!({
                "file_path": path, "file_type": row.file_type, "content": if inline { Some(content) } else { None },
                "content_omitted": !inline, "content_hash": row.content_hash, "version": row.version, "seq": seq,
                "timestamp": row.updated_at,
            }),
        );
        let result = json!({"file_path": path, "version": row.version, "content_hash": row.content_hash, "seq": seq, "noop": false});
        Ok(Outcome { result, messages: vec![event] })
    }

    pub fn delete_project_file(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        path: Option<&str>,
        expected: Option<i32>,
    ) -> Result<Outcome, ApiError> {
        check_path_arg(path, "p_file_path")?;
        check_expected_version(expected, "expected_version")?;
        let (project, role) = self.require_access(caller, project, true)?;
        let path = path.unwrap_or_default();
        let Some(head) = self.head(project, path) else {
            return Err(err("PT404", format!("file {path} not found in project {project}")));
        };
        if head.deleted {
            let result = json!({"file_path": path, "version": head.version, "seq": head.seq, "noop": true});
            return Ok(Outcome { result, messages: vec![] });
        }
        check_expected(path, expected, Some(head))?;
        let writer = self.writer(caller, project, role)?;
        let seq = self.next_seq(project);
        let row = self.write_version(project, path, None, None, true, writer, seq);
        let event = message(
            self.ids.0.uuid(),
            project,
            "file:delete",
            json!({"file_path": path, "version": row.version, "seq": seq, "timestamp": row.updated_at}),
        );
        let result = json!({"file_path": path, "version": row.version, "seq": seq, "noop": false});
        Ok(Outcome { result, messages: vec![event] })
    }

    pub fn list_current_files(&self, caller: &Caller, project: Option<Uuid>) -> Result<Outcome, ApiError> {
        let (project, _) = self.require_access(caller, project, false)?;
        let rows: Vec<Value> = self
            .files
            .range((project, String::new())..)
            .take_while(|((p, _), _)| *p == project)
            .filter_map(|((_, path), rows)| {
                let head = rows.last()?;
                (!head.deleted).then(|| {
                    json!({
                        "file_path": path, "file_type": head.file_type, "content": head.content,
                        "content_hash": head.content_hash, "version": head.version, "updated_at": head.updated_at,
                        "seq": head.seq,
                    })
                })
            })
            .collect();
        Ok(Outcome { result: Value::Array(rows), messages: vec![] })
    }

    pub fn list_changes_since(
        &self,
        caller: &Caller,
        project: Option<Uuid>,
        since: Option<i64>,
    ) -> Result<Outcome, ApiError> {
        let (project, _) = self.require_access(caller, project, false)?;
        let since = match since {
            Some(s) if s >= 0 => s,
            _ => return Err(invalid("since_seq must be a seq >= 0")),
        };
        let seq = self.projects[&project].seq;
        if since > seq {
            return Err(ApiError::from_sqlstate(
                "22023",
                &format!("since_seq {since} is ahead of the project seq {seq}"),
                None,
                Some("the consumer is ahead of the database: hydrate again from a fresh snapshot"),
                true,
            ));
        }
        let mut changes: Vec<(i64, String, &Row)> = self
            .files
            .range((project, String::new())..)
            .take_while(|((p, _), _)| *p == project)
            .filter_map(|((_, path), rows)| {
                let latest = rows.iter().rev().find(|r| r.seq > since && r.seq <= seq)?;
                Some((latest.seq, path.clone(), latest))
            })
            .collect();
        changes.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let changes: Vec<Value> = changes
            .into_iter()
            .map(|(_, path, r)| {
                json!({
                    "file_path": path, "file_type": r.file_type, "content": r.content, "content_hash": r.content_hash,
                    "version": r.version, "deleted": r.deleted, "seq": r.seq,
                })
            })
            .collect();
        Ok(Outcome { result: json!({"seq": seq, "changes": changes}), messages: vec![] })
    }
}

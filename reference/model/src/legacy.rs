//! Table writes on `legacy_project_files` (`0007_legacy_writes.sql`): each row routed into the
//! versioned writes as the view's trigger routes it — an insert creates (or, with
//! `resolution=merge-duplicates`, upserts; with `resolution=ignore-duplicates`, skips a live
//! path), an update writes new content or type, a delete leaves a tombstone. All or nothing.

use crate::read;
use crate::state::{err, Caller, Outcome, State};
use fsync_protocol::limits::{infer_file_type, is_file_type};
use fsync_store::data::{WriteKind, WriteQuery, WRITABLE_RELATION};
use fsync_store::error::ApiError;
use serde_json::{Map, Value};
use uuid::Uuid;

impl State {
    /// A table write on the view as `caller`: the rows written (as the view shows them after
    /// the write) in `result`, and the events of every versioned write it made.
    pub fn legacy_write(&mut self, caller: &Caller, query: &WriteQuery) -> Result<Outcome, ApiError> {
        let before = self.clone();
        let written = self.legacy_rows(caller, query);
        if written.is_err() {
            *self = before;
        }
        written
    }

    fn legacy_rows(&mut self, caller: &Caller, query: &WriteQuery) -> Result<Outcome, ApiError> {
        let merge = query.prefer.contains("resolution=merge-duplicates");
        let ignore = query.prefer.contains("resolution=ignore-duplicates");
        let (mut rows, mut messages) = (Vec::new(), Vec::new());
        match &query.kind {
            WriteKind::Insert { rows: new } => {
                // Every row is typed first, as `jsonb_populate_recordset` does.
                let typed = new.iter().map(LegacyRow::from_json).collect::<Result<Vec<_>, _>>()?;
                for row in typed {
                    let expected = if merge { None } else { Some(0) };
                    match self.legacy_upsert(caller, &row, expected) {
                        Err(e) if e.body.code == "PT409" && ignore => continue,
                        written => {
                            let (row, events) = written?;
                            rows.push(row);
                            messages.extend(events);
                        }
                    }
                }
            }
            WriteKind::Update { set, filters } => {
                let targets = read::matching(self, caller, WRITABLE_RELATION, filters)?;
                // The new values are typed only when a row matched, as PostgreSQL types them.
                if !targets.is_empty() {
                    let changes = LegacyRow::from_json(set)?;
                    for old in targets {
                        let old = LegacyRow::from_json(&old)?;
                        let new = old.updated(set, &changes);
                        if new.project != old.project || new.path != old.path {
                            return Err(ApiError::from_sqlstate(
                                "22023",
                                "a legacy write cannot move a file to another path or project",
                                None,
                                Some("write the new path, then delete the old one"),
                                true,
                            ));
                        }
                        let (row, events) = self.legacy_upsert(caller, &new, None)?;
                        rows.push(row);
                        messages.extend(events);
                    }
                }
            }
            WriteKind::Delete { filters } => {
                for old in read::matching(self, caller, WRITABLE_RELATION, filters)? {
                    let row = LegacyRow::from_json(&old)?;
                    let outcome = self.delete_project_file(caller, row.project, row.path.as_deref(), None)?;
                    messages.extend(outcome.messages);
                    rows.push(Value::Object(old));
                }
            }
        }
        Ok(Outcome { result: Value::Array(rows), messages })
    }

    /// `upsert_project_file` of one row, its type inferred when missing or unknown; the row as the
    /// view shows it afterwards.
    fn legacy_upsert(
        &mut self,
        caller: &Caller,
        row: &LegacyRow,
        expected: Option<i32>,
    ) -> Result<(Value, Vec<fsync_store::data::RealtimeMessage>), ApiError> {
        let path = row.path.as_deref();
        let file_type = match row.file_type.as_deref() {
            Some(t) if is_file_type(t) => t.to_owned(),
            _ => infer_file_type(path.unwrap_or_default()).to_owned(),
        };
        let content = row.content.clone().unwrap_or_default();
        let outcome =
            self.upsert_project_file(caller, row.project, path, Some(&content), Some(&file_type), expected)?;
        let (project, path) = (row.project.expect("written"), path.expect("written"));
        let head = self.head(project, path).expect("a written path has a head");
        let shown = read::legacy_row(project, path, head);
        Ok((shown, outcome.messages))
    }
}

/// A row of the view, typed as PostgreSQL types its columns.
#[derive(Debug, Clone, PartialEq)]
struct LegacyRow {
    project: Option<Uuid>,
    path: Option<String>,
    file_type: Option<String>,
    content: Option<String>,
}

impl LegacyRow {
    fn from_json(row: &Map<String, Value>) -> Result<LegacyRow, ApiError> {
        let project = match text(row.get("project_id")) {
            None => None,
            Some(s) => Some(
                crate::args::pg_uuid(&s)
                    .ok_or_else(|| err("22P02", format!("invalid input syntax for type uuid: \"{s}\"")))?,
            ),
        };
        Ok(LegacyRow {
            project,
            path: text(row.get("path")),
            file_type: text(row.get("type")),
            content: text(row.get("content")),
        })
    }

    /// This row with the columns `set` names taken from `changes`.
    fn updated(&self, set: &Map<String, Value>, changes: &LegacyRow) -> LegacyRow {
        let pick = |column: &str, new: &Option<String>, old: &Option<String>| {
            if set.contains_key(column) {
                new.clone()
            } else {
                old.clone()
            }
        };
        LegacyRow {
            project: if set.contains_key("project_id") { changes.project } else { self.project },
            path: pick("path", &changes.path, &self.path),
            file_type: pick("type", &changes.file_type, &self.file_type),
            content: pick("content", &changes.content, &self.content),
        }
    }
}

/// A JSON value as a text column takes it (`jsonb_populate_record`): strings as they are, other
/// scalars and documents as their JSON text, null as NULL.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

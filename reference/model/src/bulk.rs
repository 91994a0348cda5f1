//! `bulk_upsert_project_files` (`0003_rpcs.sql`): every entry checked first, then compared and
//! set as one unit, then written under one seq with one `bulk:apply` event.

use crate::state::{
    check_content, check_expected, check_file_type, check_path_arg, err, invalid, message, quote_literal, Caller,
    Outcome, State,
};
use fsync_protocol::content_hash;
use fsync_protocol::limits::{MAX_BULK_BYTES, MAX_BULK_FILES, MAX_INLINE_EVENT_BYTES};
use fsync_store::error::ApiError;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// One entry, checked.
struct Plan {
    path: String,
    file_type: Option<String>,
    content: Option<String>,
    delete: bool,
    expected: Option<i32>,
}

impl State {
    pub fn bulk_upsert_project_files(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        files: Option<&Value>,
    ) -> Result<Outcome, ApiError> {
        // 1. Validate every entry before touching anything.
        let plans = plan(files)?;
        let (project, role) = self.require_access(caller, project, true)?;
        // 2. Compare-and-set every entry; one conflict fails the whole bulk.
        let noops = self.noops(project, &plans)?;
        // 3. Write every change under one seq.
        let changed = noops.iter().filter(|n| !**n).count();
        let writer = if changed > 0 { Some(self.writer(caller, project, role)?) } else { None };
        let seq = match writer {
            Some(_) => self.next_seq(project),
            None => self.projects[&project].seq,
        };
        let mut results = Vec::new();
        let mut event_files = Vec::new();
        let mut timestamp = self.now();
        for (plan, noop) in plans.iter().zip(&noops) {
            if *noop {
                let head = self.head(project, &plan.path).expect("a no-op has a head");
                results.push(json!({"file_path": plan.path, "version": head.version, "content_hash": head.content_hash, "deleted": head.deleted, "noop": true}));
            } else {
                let writer = writer.expect("a change has a writer");
                let (file_type, content) = (plan.file_type.as_deref(), plan.content.as_deref());
                let row = self.write_version(project, &plan.path, file_type, content, plan.delete, writer, seq);
                results.push(json!({"file_path": plan.path, "version": row.version, "content_hash": row.content_hash, "deleted": row.deleted, "noop": false}));
                event_files.push(json!({"file_path": plan.path, "version": row.version, "content_hash": row.content_hash, "deleted": row.deleted}));
                timestamp = row.updated_at;
            }
        }
        let messages = if changed > 0 {
            vec![message(self.ids.0.uuid(), project, "bulk:apply", event(seq, event_files, timestamp))]
        } else {
            vec![]
        };
        Ok(Outcome { result: json!({"seq": seq, "files": results}), messages })
    }

    /// Which entries are no-ops; the first compare-and-set failure (or delete of a path that
    /// never existed) fails the bulk.
    fn noops(&self, project: Uuid, plans: &[Plan]) -> Result<Vec<bool>, ApiError> {
        let mut noops = Vec::with_capacity(plans.len());
        for (index, plan) in plans.iter().enumerate() {
            let head = self.head(project, &plan.path);
            let noop = if plan.delete {
                let Some(head) = head else {
                    return Err(err(
                        "PT404",
                        format!("files[{index}]: file {} not found in project {project}", plan.path),
                    ));
                };
                head.deleted
            } else {
                head.is_some_and(|h| {
                    !h.deleted
                        && h.content_hash.as_deref() == plan.content.as_deref().map(content_hash).as_deref()
                        && Some(h.file_type.as_str()) == plan.file_type.as_deref()
                })
            };
            if !noop {
                check_expected(&plan.path, plan.expected, head)?;
            }
            noops.push(noop);
        }
        Ok(noops)
    }
}

/// The `bulk:apply` payload; a long file list is left out (same budget as SQL: path bytes + 120
/// per file).
fn event(seq: i64, files: Vec<Value>, timestamp: String) -> Value {
    let event_bytes: usize = files.iter().map(|f| f["file_path"].as_str().map_or(0, str::len) + 120).sum();
    if event_bytes > MAX_INLINE_EVENT_BYTES {
        json!({"seq": seq, "files": [], "files_omitted": true, "timestamp": timestamp})
    } else {
        json!({"seq": seq, "files": files, "files_omitted": false, "timestamp": timestamp})
    }
}

/// Every entry checked, in order, before anything is touched.
fn plan(files: Option<&Value>) -> Result<Vec<Plan>, ApiError> {
    let Some(Value::Array(entries)) = files else {
        return Err(invalid(
            "files must be a JSON array of {file_path, file_type, content, expected_version?, delete?}",
        ));
    };
    if entries.is_empty() {
        return Err(invalid("files must not be empty"));
    }
    if entries.len() > MAX_BULK_FILES {
        return Err(err(
            "PT413",
            format!("files has {} entries, more than the limit of {MAX_BULK_FILES}", entries.len()),
        ));
    }
    let mut plans: Vec<Plan> = Vec::new();
    let mut total = 0usize;
    for (index, entry) in entries.iter().enumerate() {
        let plan = plan_entry(&format!("files[{index}]"), entry, &plans)?;
        total += plan.content.as_ref().map_or(0, String::len);
        if total > MAX_BULK_BYTES {
            return Err(err(
                "PT413",
                format!("files hold more than the bulk limit of {MAX_BULK_BYTES} bytes of content"),
            ));
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// One entry (`what` is its name in messages), checked against the ones before it.
fn plan_entry(what: &str, entry: &Value, before: &[Plan]) -> Result<Plan, ApiError> {
    let Value::Object(fields) = entry else { return Err(invalid(format!("{what} must be an object"))) };
    for key in jsonb_key_order(fields) {
        if !["file_path", "file_type", "content", "expected_version", "delete"].contains(&key.as_str()) {
            return Err(invalid(format!("{what} has unknown key {}", quote_literal(&key))));
        }
    }
    let Some(Value::String(path)) = fields.get("file_path") else {
        return Err(invalid(format!("{what}.file_path must be a string")));
    };
    check_path_arg(Some(path), &format!("{what}.file_path"))?;
    if before.iter().any(|p| &p.path == path) {
        return Err(invalid(format!("{what}.file_path {path} appears more than once in files")));
    }
    let delete = match fields.get("delete") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid(format!("{what}.delete must be a boolean"))),
    };
    let expected = match fields.get("expected_version") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if is_small_natural(n) => Some(n.as_i64().unwrap_or_default() as i32),
        Some(_) => return Err(invalid(format!("{what}.expected_version must be null, 0 or a positive integer"))),
    };
    if delete {
        return Ok(Plan { path: path.clone(), file_type: None, content: None, delete, expected });
    }
    let Some(Value::String(file_type)) = fields.get("file_type") else {
        return Err(invalid(format!("{what}.file_type must be a string")));
    };
    check_file_type(Some(file_type), &format!("{what}.file_type"))?;
    let Some(Value::String(content)) = fields.get("content") else {
        return Err(invalid(format!("{what}.content must be a string")));
    };
    check_content(Some(content), &format!("{what}.content"))?;
    Ok(Plan {
        path: path.clone(),
        file_type: Some(file_type.clone()),
        content: Some(content.clone()),
        delete,
        expected,
    })
}

/// A JSON number that `^[0-9]{1,9}$` accepts as text.
fn is_small_natural(n: &serde_json::Number) -> bool {
    let text = n.to_string();
    (1..=9).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// The order `jsonb_object_keys` returns keys in: shorter first, then bytewise.
fn jsonb_key_order(fields: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = fields.keys().cloned().collect();
    keys.sort_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
    keys
}

#[cfg(test)]
mod tests {
    //! What the differential tests cannot afford to send PostgreSQL on every run: 64 MiB bulks.
    //! (`reference/server/tests/it/bulk.rs` checks the SQL side of each limit it can afford.)
    use super::*;
    use crate::state::{Access, Profile, Project};
    use fsync_protocol::limits::MAX_CONTENT_BYTES;
    use std::collections::BTreeMap;

    fn world() -> (State, Caller, Uuid) {
        let owner = Uuid::from_u128(1);
        let project = Uuid::from_u128(2);
        let mut state = State::default();
        state.profiles.insert(owner, Profile { email: None, display_name: None });
        state.projects.insert(
            project,
            Project { name: "p".into(), owner, seq: 0, members: BTreeMap::from([(owner, Access::Owner)]) },
        );
        let Value::Object(claims) = json!({"role": "authenticated", "sub": owner}) else { unreachable!() };
        (state, Caller { role: "authenticated".into(), claims }, project)
    }

    /// Entries holding `total` bytes of content, then one entry with a bad path.
    fn bulk_of_bytes(total: usize) -> Value {
        let mut entries = Vec::new();
        let mut left = total;
        while left > 0 {
            let n = left.min(MAX_CONTENT_BYTES);
            entries.push(
                json!({"file_path": format!("big/{}", entries.len()), "file_type": "text", "content": "b".repeat(n)}),
            );
            left -= n;
        }
        entries.push(json!({"file_path": "../invalid", "file_type": "text", "content": "x"}));
        Value::Array(entries)
    }

    #[test]
    fn a_bulk_at_the_byte_limit_passes_the_size_check_and_one_past_it_does_not() {
        let (mut state, caller, project) = world();
        let at = state
            .bulk_upsert_project_files(&caller, Some(project), Some(&bulk_of_bytes(MAX_BULK_BYTES)))
            .err()
            .unwrap();
        assert_eq!(at.body.code, "22023", "at the limit, the bad path is what fails: {}", at.body.message);
        let past = state
            .bulk_upsert_project_files(&caller, Some(project), Some(&bulk_of_bytes(MAX_BULK_BYTES + 1)))
            .err()
            .unwrap();
        assert_eq!(past.body.code, "PT413", "{}", past.body.message);
        assert_eq!(
            past.body.message,
            format!("files hold more than the bulk limit of {MAX_BULK_BYTES} bytes of content")
        );
        assert!(state.files.is_empty());
    }
}

//! The model's state and the SQL API over it, one method per SQL function, with the same checks
//! in the same order and the same results and errors as `0002_access.sql` and `0003_rpcs.sql`.
//! No I/O: a method takes the caller and typed arguments and returns a JSON result plus the
//! broadcasts its "commit" sends.

use fsync_protocol::limits::{is_file_type, FILE_TYPES, MAX_CONTENT_BYTES, MAX_PATH_BYTES};
use fsync_protocol::{check_path, content_hash};
use fsync_store::data::RealtimeMessage;
use fsync_store::error::ApiError;
use fsync_store::{Ids, SystemIds};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// A caller: the request's database role and JWT claims.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: String,
    pub claims: Map<String, Value>,
}

impl Caller {
    pub(crate) fn claim(&self, key: &str) -> Option<&str> {
        self.claims.get(key).and_then(Value::as_str)
    }

    /// `auth.uid()`: the `sub` claim as a uuid (an invalid one is an error in SQL).
    pub(crate) fn uid(&self) -> Result<Option<Uuid>, ApiError> {
        match self.claims.get("sub") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if text.is_empty() {
                    return Ok(None);
                }
                Uuid::parse_str(&text)
                    .map(Some)
                    .map_err(|_| err("22P02", format!("invalid input syntax for type uuid: \"{text}\"")))
            }
        }
    }

    pub(crate) fn claims_role(&self) -> Option<&str> {
        self.claim("role")
    }
}

/// A project member's role, or what else a caller can be to a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Owner,
    Editor,
    Viewer,
    Container,
    Service,
}

impl Access {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Access::Owner => "owner",
            Access::Editor => "editor",
            Access::Viewer => "viewer",
            Access::Container => "container",
            Access::Service => "service",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub email: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub name: String,
    pub owner: Uuid,
    pub seq: i64,
    pub members: BTreeMap<Uuid, Access>,
}

/// One version row of a path.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: Uuid,
    pub parent: Option<Uuid>,
    pub version: i32,
    pub seq: i64,
    pub file_type: String,
    pub content: Option<String>,
    pub content_hash: Option<String>,
    pub deleted: bool,
    pub created_by: Uuid,
    pub last_modified_by: Option<Uuid>,
    /// A logical timestamp (the model has no clock).
    pub updated_at: String,
    /// For a binary file: where its bytes are (`content` is `None`).
    pub stored: Option<crate::binary::Stored>,
}

/// Everything the database holds, for the tables the API touches.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub profiles: BTreeMap<Uuid, Profile>,
    pub projects: BTreeMap<Uuid, Project>,
    /// (project, path) → versions in order; the last is the head.
    pub files: BTreeMap<(Uuid, String), Vec<Row>>,
    /// Logical time: one tick per committed call.
    pub tick: u64,
    /// `storage.objects`: (bucket, name) → row.
    pub objects: BTreeMap<(String, String), StoredObject>,
    /// Where row, project and message ids come from.
    pub ids: IdSource,
    /// `fsync.preview_sessions`: preview sessions' records, by id.
    pub sessions: BTreeMap<Uuid, fsync_store::sessions::SessionRecord>,
    /// `fsync.project_snapshots`: (project, snapshot id) → when built, until when signed.
    pub snapshots: BTreeMap<(Uuid, String), crate::snapshots::SnapshotRow>,
    /// Sessions whose record ended in the call being made: notified to every listener when it
    /// commits, as `pg_notify` in the trigger of `0010_session_lifecycle.sql` is.
    pub(crate) ended: Vec<(Uuid, fsync_store::sessions::SessionEnd)>,
}

/// One row of `storage.objects`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub id: Uuid,
    /// `auth.uid()` of whoever recorded it.
    pub owner: Option<Uuid>,
    pub metadata: Value,
}

/// The model's id source: the system's unless a seeded one is given (`MemStore::with_sources`).
#[derive(Clone)]
pub struct IdSource(pub Arc<dyn Ids>);

impl Default for IdSource {
    fn default() -> Self {
        IdSource(Arc::new(SystemIds))
    }
}

impl std::fmt::Debug for IdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdSource")
    }
}

/// What a call returns and sends.
pub struct Outcome {
    pub result: Value,
    pub messages: Vec<RealtimeMessage>,
}

pub(crate) fn err(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::from_sqlstate(code, &message.into(), None, None, true)
}

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    err("22023", message)
}

pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub(crate) fn topic(project: Uuid) -> String {
    format!("project:{project}")
}

pub(crate) fn message(id: Uuid, project: Uuid, event: &str, payload: Value) -> RealtimeMessage {
    RealtimeMessage {
        id: id.to_string(),
        topic: topic(project),
        event: event.to_owned(),
        payload_json: payload.to_string(),
        private: true,
    }
}

// ---- fsync.check_* (0003) ----

pub(crate) fn check_path_arg(path: Option<&str>, what: &str) -> Result<(), ApiError> {
    let problem = match path {
        None => Some("is empty".to_owned()),
        Some(p) => check_path(p).err().map(|p| p.to_string()),
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(ApiError::from_sqlstate(
            "22023",
            &format!("{what} {problem}"),
            None,
            Some(&format!(
                "paths are relative POSIX paths: no leading /, no backslash, no empty, \".\" or \"..\" segments, no control characters, at most {MAX_PATH_BYTES} bytes"
            )),
            true,
        )),
    }
}

pub(crate) fn check_file_type(file_type: Option<&str>, what: &str) -> Result<(), ApiError> {
    match file_type {
        Some(t) if is_file_type(t) => Ok(()),
        other => Err(ApiError::from_sqlstate(
            "22023",
            &format!("{what} {} is not a known file type", other.map(quote_literal).unwrap_or_else(|| "NULL".into())),
            None,
            Some(&format!("one of: {}", FILE_TYPES.join(", "))),
            true,
        )),
    }
}

pub(crate) fn check_content(content: Option<&str>, what: &str) -> Result<(), ApiError> {
    let Some(content) = content else { return Err(invalid(format!("{what} is required"))) };
    if content.len() > MAX_CONTENT_BYTES {
        return Err(err(
            "PT413",
            format!("{what} is {} bytes, more than the limit of {MAX_CONTENT_BYTES} bytes", content.len()),
        ));
    }
    Ok(())
}

pub(crate) fn check_expected_version(expected: Option<i32>, what: &str) -> Result<(), ApiError> {
    if expected.is_some_and(|e| e < 0) {
        return Err(invalid(format!("{what} must be null, 0 (create only) or a version >= 1")));
    }
    Ok(())
}

/// `fsync.check_expected`: compare-and-set against the head.
pub(crate) fn check_expected(path: &str, expected: Option<i32>, head: Option<&Row>) -> Result<(), ApiError> {
    let Some(expected) = expected else { return Ok(()) };
    let current = head.map_or(0, |h| h.version);
    let deleted = head.is_some_and(|h| h.deleted);
    // 0 accepts a path with no live file; n accepts only a head at version n (versions start
    // at 1, so no head ever matches 0).
    let accepted = if expected == 0 { head.is_none() || deleted } else { head.is_some_and(|h| h.version == expected) };
    if accepted {
        return Ok(());
    }
    Err(ApiError::from_sqlstate(
        "PT409",
        &format!(
            "version conflict on {path}: expected version {expected}, head is version {current}{}",
            if deleted { " (deleted)" } else { "" }
        ),
        Some(
            &json!({"file_path": path, "expected_version": expected, "current_version": current, "deleted": deleted})
                .to_string(),
        ),
        Some(&format!("reload {path} and retry with expected_version {current}")),
        true,
    ))
}

impl State {
    pub(crate) fn now(&mut self) -> String {
        // Distinct and increasing, in PostgreSQL's JSON timestamp format.
        self.tick += 1;
        let micros = self.tick;
        format!("2000-01-01T00:00:00.{:06}+00:00", micros % 1_000_000)
    }

    // ---- fsync.access_role (0002) ----

    /// The caller's standing in `project` (`None`: nothing).
    pub fn access_role(&self, caller: &Caller, project: Option<Uuid>) -> Option<Access> {
        let project = project?;
        if caller.claims_role() == Some("service_role") {
            return Some(Access::Service);
        }
        if caller.claim("scope") == Some("container") {
            // Only until its session is stopped (`fsync.session_stopped`).
            let stopped = caller
                .claim("session_id")
                .and_then(|s| Uuid::parse_str(s).ok().filter(|_| s.len() == 36))
                .and_then(|s| self.sessions.get(&s))
                .is_some_and(|s| s.view.status == fsync_protocol::snapshot::SessionStatus::Stopped);
            let ours = caller.claim("project_id") == Some(project.to_string().as_str());
            return (ours && !stopped).then_some(Access::Container);
        }
        if caller.claims_role() != Some("authenticated") {
            return None;
        }
        let sub = caller.claim("sub")?;
        let user = Uuid::parse_str(sub).ok().filter(|_| sub.len() == 36)?;
        self.projects.get(&project)?.members.get(&user).copied()
    }

    /// `fsync.require_access`.
    pub(crate) fn require_access(
        &self,
        caller: &Caller,
        project: Option<Uuid>,
        write: bool,
    ) -> Result<(Uuid, Access), ApiError> {
        let Some(id) = project else { return Err(invalid("project_uuid is required")) };
        let role = self.access_role(caller, project);
        let Some(role) = role.filter(|_| self.projects.contains_key(&id)) else {
            return Err(err("PT404", format!("project {id} not found")));
        };
        if write && role == Access::Container {
            return Err(err("42501", "container tokens cannot write"));
        }
        if write && !matches!(role, Access::Owner | Access::Editor | Access::Service) {
            return Err(ApiError::from_sqlstate(
                "42501",
                &format!("role {} cannot write to project {id}", role.name()),
                None,
                Some("owners and editors write; viewers read"),
                true,
            ));
        }
        Ok((id, role))
    }

    /// `fsync.writer`: the caller, or the owner for the service role.
    pub(crate) fn writer(&self, caller: &Caller, project: Uuid, role: Access) -> Result<Uuid, ApiError> {
        if role == Access::Service {
            return Ok(self.projects[&project].owner);
        }
        caller.uid()?.ok_or_else(|| {
            err(
                "23502",
                "null value in column \"created_by\" of relation \"project_files\" violates not-null constraint",
            )
        })
    }

    pub fn head(&self, project: Uuid, path: &str) -> Option<&Row> {
        self.files.get(&(project, path.to_owned())).and_then(|rows| rows.last())
    }

    pub(crate) fn next_seq(&mut self, project: Uuid) -> i64 {
        let p = self.projects.get_mut(&project).expect("a locked project exists");
        p.seq += 1;
        p.seq
    }

    /// `fsync.write_version`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_version(
        &mut self,
        project: Uuid,
        path: &str,
        file_type: Option<&str>,
        content: Option<&str>,
        deleted: bool,
        writer: Uuid,
        seq: i64,
    ) -> Row {
        let now = self.now();
        let rows = self.files.entry((project, path.to_owned())).or_default();
        let head = rows.last();
        let row = Row {
            id: self.ids.0.uuid(),
            parent: head.map(|h| h.id),
            version: head.map_or(0, |h| h.version) + 1,
            seq,
            file_type: file_type.map(str::to_owned).or_else(|| head.map(|h| h.file_type.clone())).unwrap_or_default(),
            content: if deleted { None } else { content.map(str::to_owned) },
            content_hash: if deleted { None } else { content.map(content_hash) },
            deleted,
            created_by: head.map_or(writer, |h| h.created_by),
            last_modified_by: Some(writer),
            updated_at: now,
            stored: None,
        };
        rows.push(row.clone());
        row
    }

    /// Like `write_version` for a binary file: no content, its hash, where its bytes are.
    #[allow(clippy::too_many_arguments)] // the columns of the row, as in SQL
    pub(crate) fn write_binary(
        &mut self,
        project: Uuid,
        path: &str,
        file_type: &str,
        hash: &str,
        stored: crate::binary::Stored,
        writer: Uuid,
        seq: i64,
    ) -> Row {
        let mut row = self.write_version(project, path, Some(file_type), None, false, writer, seq);
        row.content_hash = Some(hash.to_owned());
        row.stored = Some(stored);
        let rows = self.files.get_mut(&(project, path.to_owned())).expect("the row just written");
        *rows.last_mut().expect("the row just written") = row.clone();
        row
    }
}

//! The model's state and the SQL API over it, one method per SQL function, with the same checks
//! in the same order and the same results and errors as `0002_access.sql` and `0003_rpcs.sql`.
//! No I/O: a method takes the caller and typed arguments and returns a JSON result plus the
//! broadcasts its "commit" sends.

use fsync_protocol::limits::{
    is_file_type, FILE_TYPES, MAX_BULK_BYTES, MAX_BULK_FILES, MAX_CONTENT_BYTES, MAX_INLINE_EVENT_BYTES, MAX_PATH_BYTES,
};
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
    fn claim(&self, key: &str) -> Option<&str> {
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

    fn claims_role(&self) -> Option<&str> {
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
    fn name(self) -> &'static str {
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

fn err(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::from_sqlstate(code, &message.into(), None, None, true)
}

fn invalid(message: impl Into<String>) -> ApiError {
    err("22023", message)
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn topic(project: Uuid) -> String {
    format!("project:{project}")
}

fn message(id: Uuid, project: Uuid, event: &str, payload: Value) -> RealtimeMessage {
    RealtimeMessage {
        id: id.to_string(),
        topic: topic(project),
        event: event.to_owned(),
        payload_json: payload.to_string(),
        private: true,
    }
}

// ---- fsync.check_* (0003) ----

fn check_path_arg(path: Option<&str>, what: &str) -> Result<(), ApiError> {
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

fn check_file_type(file_type: Option<&str>, what: &str) -> Result<(), ApiError> {
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

fn check_content(content: Option<&str>, what: &str) -> Result<(), ApiError> {
    let Some(content) = content else { return Err(invalid(format!("{what} is required"))) };
    if content.len() > MAX_CONTENT_BYTES {
        return Err(err(
            "PT413",
            format!("{what} is {} bytes, more than the limit of {MAX_CONTENT_BYTES} bytes", content.len()),
        ));
    }
    Ok(())
}

fn check_expected_version(expected: Option<i32>, what: &str) -> Result<(), ApiError> {
    if expected.is_some_and(|e| e < 0) {
        return Err(invalid(format!("{what} must be null, 0 (create only) or a version >= 1")));
    }
    Ok(())
}

/// `fsync.check_expected`: compare-and-set against the head.
fn check_expected(path: &str, expected: Option<i32>, head: Option<&Row>) -> Result<(), ApiError> {
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
    fn now(&mut self) -> String {
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
            return (caller.claim("project_id") == Some(project.to_string().as_str())).then_some(Access::Container);
        }
        if caller.claims_role() != Some("authenticated") {
            return None;
        }
        let sub = caller.claim("sub")?;
        let user = Uuid::parse_str(sub).ok().filter(|_| sub.len() == 36)?;
        self.projects.get(&project)?.members.get(&user).copied()
    }

    /// `fsync.require_access`.
    fn require_access(&self, caller: &Caller, project: Option<Uuid>, write: bool) -> Result<(Uuid, Access), ApiError> {
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
    fn writer(&self, caller: &Caller, project: Uuid, role: Access) -> Result<Uuid, ApiError> {
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

    fn next_seq(&mut self, project: Uuid) -> i64 {
        let p = self.projects.get_mut(&project).expect("a locked project exists");
        p.seq += 1;
        p.seq
    }

    /// `fsync.write_version`.
    #[allow(clippy::too_many_arguments)]
    fn write_version(
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
        };
        rows.push(row.clone());
        row
    }

    // ---- the RPCs (0003) ----

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

    pub fn bulk_upsert_project_files(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        files: Option<&Value>,
    ) -> Result<Outcome, ApiError> {
        // 1. Validate every entry before touching anything.
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
        struct Plan {
            path: String,
            file_type: Option<String>,
            content: Option<String>,
            delete: bool,
            expected: Option<i32>,
        }
        let mut plans: Vec<Plan> = Vec::new();
        let mut total = 0usize;
        for (index, entry) in entries.iter().enumerate() {
            let what = format!("files[{index}]");
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
            if plans.iter().any(|p| &p.path == path) {
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
                Some(_) => {
                    return Err(invalid(format!("{what}.expected_version must be null, 0 or a positive integer")))
                }
            };
            let (file_type, content) = if delete {
                (None, None)
            } else {
                let Some(Value::String(file_type)) = fields.get("file_type") else {
                    return Err(invalid(format!("{what}.file_type must be a string")));
                };
                check_file_type(Some(file_type), &format!("{what}.file_type"))?;
                let Some(Value::String(content)) = fields.get("content") else {
                    return Err(invalid(format!("{what}.content must be a string")));
                };
                check_content(Some(content), &format!("{what}.content"))?;
                total += content.len();
                if total > MAX_BULK_BYTES {
                    return Err(err(
                        "PT413",
                        format!("files hold more than the bulk limit of {MAX_BULK_BYTES} bytes of content"),
                    ));
                }
                (Some(file_type.clone()), Some(content.clone()))
            };
            plans.push(Plan { path: path.clone(), file_type, content, delete, expected });
        }

        let (project, role) = self.require_access(caller, project, true)?;

        // 2. Compare-and-set every entry; one conflict fails the whole bulk.
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
                let row = self.write_version(
                    project,
                    &plan.path,
                    plan.file_type.as_deref(),
                    plan.content.as_deref(),
                    plan.delete,
                    writer,
                    seq,
                );
                results.push(json!({"file_path": plan.path, "version": row.version, "content_hash": row.content_hash, "deleted": row.deleted, "noop": false}));
                event_files.push(json!({"file_path": plan.path, "version": row.version, "content_hash": row.content_hash, "deleted": row.deleted}));
                timestamp = row.updated_at;
            }
        }
        let messages = if changed > 0 {
            // A long file list is left out (same budget as SQL: path bytes + 120 per file).
            let event_bytes: usize =
                event_files.iter().map(|f| f["file_path"].as_str().map_or(0, str::len) + 120).sum();
            let payload = if event_bytes > MAX_INLINE_EVENT_BYTES {
                json!({"seq": seq, "files": [], "files_omitted": true, "timestamp": timestamp})
            } else {
                json!({"seq": seq, "files": event_files, "files_omitted": false, "timestamp": timestamp})
            };
            vec![message(self.ids.0.uuid(), project, "bulk:apply", payload)]
        } else {
            vec![]
        };
        Ok(Outcome { result: json!({"seq": seq, "files": results}), messages })
    }

    /// `auth.role() = 'authenticated'`, not a container, with a uid.
    fn signed_in_user(&self, caller: &Caller) -> Result<Option<Uuid>, ApiError> {
        if caller.claims_role() == Some("authenticated") && caller.claim("scope").unwrap_or("") != "container" {
            return caller.uid();
        }
        Ok(None)
    }

    pub fn ensure_user_profile(
        &mut self,
        caller: &Caller,
        user: Option<Uuid>,
        email: Option<String>,
        display_name: Option<String>,
    ) -> Result<Outcome, ApiError> {
        let id = if caller.claims_role() == Some("service_role") {
            user.ok_or_else(|| invalid("p_user_id is required with the service role"))?
        } else if let Some(uid) = self.signed_in_user(caller)? {
            if user.is_some_and(|u| u != uid) {
                return Err(err("42501", "a user can only create their own profile"));
            }
            if email.is_some() && email.as_deref() != caller.claim("email") {
                return Err(err("42501", "a user's email comes from their token"));
            }
            uid
        } else {
            return Err(err("42501", "sign in to create a profile"));
        };
        let own_email =
            if caller.uid().ok().flatten() == Some(id) { caller.claim("email").map(str::to_owned) } else { None };
        let email = email.or(own_email);
        let profile = self.profiles.entry(id).or_insert(Profile { email: None, display_name: None });
        if email.is_some() {
            profile.email = email;
        }
        if display_name.is_some() {
            profile.display_name = display_name;
        }
        let result = json!({"id": id, "email": profile.email, "display_name": profile.display_name});
        Ok(Outcome { result, messages: vec![] })
    }

    pub fn create_project(
        &mut self,
        caller: &Caller,
        name: Option<String>,
        owner: Option<Uuid>,
    ) -> Result<Outcome, ApiError> {
        let name = match name {
            Some(n) if !n.trim_matches(' ').is_empty() && n.chars().count() <= 200 => n,
            _ => return Err(invalid("p_name must be 1 to 200 characters")),
        };
        let owner = if caller.claims_role() == Some("service_role") {
            owner.ok_or_else(|| invalid("p_owner is required with the service role"))?
        } else if let Some(uid) = self.signed_in_user(caller)? {
            if owner.is_some_and(|o| o != uid) {
                return Err(err("42501", "a user can only create projects they own"));
            }
            self.profiles
                .entry(uid)
                .or_insert(Profile { email: caller.claim("email").map(str::to_owned), display_name: None });
            uid
        } else {
            return Err(err("42501", "sign in to create a project"));
        };
        if !self.profiles.contains_key(&owner) {
            return Err(err("PT404", format!("user {owner} not found")));
        }
        let id = self.ids.0.uuid();
        self.projects.insert(
            id,
            Project { name: name.clone(), owner, seq: 0, members: BTreeMap::from([(owner, Access::Owner)]) },
        );
        Ok(Outcome { result: json!({"id": id, "name": name, "owner_id": owner, "seq": 0}), messages: vec![] })
    }

    pub fn add_project_member(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        user: Option<Uuid>,
        role: Option<String>,
    ) -> Result<Outcome, ApiError> {
        let role = match role.as_deref() {
            Some("editor") => Access::Editor,
            Some("viewer") => Access::Viewer,
            _ => return Err(invalid("p_role must be editor or viewer")),
        };
        let (project, access) = self.require_access(caller, project, false)?;
        if !matches!(access, Access::Owner | Access::Service) {
            return Err(err("42501", "only the project owner manages members"));
        }
        let user = match user {
            Some(u) if self.profiles.contains_key(&u) => u,
            other => {
                return Err(err(
                    "PT404",
                    format!("user {} not found", other.map(|u| u.to_string()).unwrap_or_default()),
                ))
            }
        };
        if self.projects[&project].owner == user {
            return Err(invalid("the owner's role cannot change"));
        }
        self.projects.get_mut(&project).expect("checked").members.insert(user, role);
        Ok(Outcome { result: json!({"project_id": project, "user_id": user, "role": role.name()}), messages: vec![] })
    }

    pub fn remove_project_member(
        &mut self,
        caller: &Caller,
        project: Option<Uuid>,
        user: Option<Uuid>,
    ) -> Result<Outcome, ApiError> {
        let (project, access) = self.require_access(caller, project, false)?;
        if !matches!(access, Access::Owner | Access::Service) {
            return Err(err("42501", "only the project owner manages members"));
        }
        if user.is_some_and(|u| self.projects[&project].owner == u) {
            return Err(invalid("the owner cannot be removed"));
        }
        let removed = user.and_then(|u| self.projects.get_mut(&project).expect("checked").members.remove(&u));
        if removed.is_none() {
            let who = user.map(|u| u.to_string()).unwrap_or_default();
            return Err(err("PT404", format!("user {who} is not a member of project {project}")));
        }
        Ok(Outcome { result: json!({"project_id": project, "user_id": user, "removed": true}), messages: vec![] })
    }

    // ---- Realtime authorization (0004) ----

    /// (read, write) on a private topic, as the `realtime.messages` policies decide.
    pub fn topic_access(&self, caller: &Caller, topic: &str) -> (bool, bool) {
        if caller.role == "service_role" {
            return (true, true); // BYPASSRLS
        }
        if caller.role != "authenticated" {
            return (false, false);
        }
        // `project:<uuid>` (server events) or `project:<uuid>:client` (clients' broadcasts).
        let rest = topic.strip_prefix("project:").unwrap_or("");
        let (id, client_topic) = match rest.strip_suffix(":client") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        let project = Some(id).filter(|id| id.len() == 36).and_then(|id| Uuid::parse_str(id).ok());
        let access = project.and_then(|p| self.access_role(caller, Some(p)));
        let writer = matches!(access, Some(Access::Owner | Access::Editor | Access::Service));
        if client_topic {
            (access.is_some_and(|a| a != Access::Container), writer)
        } else {
            (access.is_some(), false)
        }
    }
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

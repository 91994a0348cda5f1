//! The frontend store of plan task 1.5: writes go through the RPCs, each path's version is
//! remembered and sent as `expected_version`, and project generation goes through the bulk RPC.
//! With the plan's flag `FSYNC_USE_RPC` off it writes as the unmigrated frontend did — table
//! writes on `legacy_project_files`, last writer wins — which the database still turns into
//! versioned writes; the store then learns each version by catching up.

use crate::client::FsyncClient;
use crate::error::ClientError;
use fsync_protocol::api::{BulkEntry, BulkFileResult, BulkResult, DeleteResult, ErrorBody, UpsertResult};
use fsync_protocol::content_hash;
use fsync_protocol::flags::{flag, USE_RPC};
use fsync_store::data::WRITABLE_RELATION;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// How a store writes (the plan's flag `FSYNC_USE_RPC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Through the RPCs, with `expected_version` (the flag on).
    Rpc,
    /// Table writes on `legacy_project_files`, last writer wins (the flag off).
    Table,
}

impl Writes {
    /// The mode a value of `FSYNC_USE_RPC` selects (unset: off, as the plan ships it).
    pub fn from_flag(value: Option<&str>) -> Writes {
        if flag(value) {
            Writes::Rpc
        } else {
            Writes::Table
        }
    }

    /// The mode `FSYNC_USE_RPC` in the environment selects.
    pub fn from_env() -> Writes {
        Writes::from_flag(std::env::var(USE_RPC).ok().as_deref())
    }
}

/// What the store knows of one path: the head's version and whether it is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub version: i32,
    pub deleted: bool,
}

/// One project's files as this client last saw them.
///
/// After [`ProjectStore::load`], every write carries the version the store knows (or `0`,
/// "create only", for a path it has never seen), so a write based on a stale view fails with
/// [`ClientError::Conflict`] instead of silently overwriting someone else's edit. On a conflict
/// the store keeps its old version: call [`ProjectStore::refresh`] and decide again.
pub struct ProjectStore {
    client: Arc<FsyncClient>,
    project: Uuid,
    writes: Writes,
    files: BTreeMap<String, FileState>,
    last_seq: i64,
    loaded: bool,
}

impl ProjectStore {
    /// A store that writes through the RPCs.
    pub fn new(client: Arc<FsyncClient>, project: Uuid) -> Self {
        ProjectStore::with_writes(client, project, Writes::Rpc)
    }

    /// A store that writes as `writes` says.
    pub fn with_writes(client: Arc<FsyncClient>, project: Uuid, writes: Writes) -> Self {
        ProjectStore { client, project, writes, files: BTreeMap::new(), last_seq: 0, loaded: false }
    }

    pub fn writes(&self) -> Writes {
        self.writes
    }

    pub fn project(&self) -> Uuid {
        self.project
    }

    /// The project's seq this store is up to date with.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// What the store knows of `path`.
    pub fn file(&self, path: &str) -> Option<FileState> {
        self.files.get(path).copied()
    }

    /// The `expected_version` a write of `path` sends.
    pub fn expected_version(&self, path: &str) -> Option<i32> {
        match self.files.get(path) {
            Some(state) => Some(state.version),
            None if self.loaded => Some(0),
            None => None,
        }
    }

    /// Loads every path's head, tombstones included, and the project's seq.
    pub async fn load(&mut self) -> Result<(), ClientError> {
        self.files.clear();
        self.last_seq = 0;
        self.refresh().await?;
        self.loaded = true;
        Ok(())
    }

    /// Catches up with every change after the store's seq.
    pub async fn refresh(&mut self) -> Result<(), ClientError> {
        self.catch_up().await.map(drop)
    }

    /// Catches up; the seq of each path that changed.
    async fn catch_up(&mut self) -> Result<BTreeMap<String, i64>, ClientError> {
        let changes = self.client.list_changes_since(self.project, self.last_seq).await?;
        let mut changed = BTreeMap::new();
        for change in changes.changes {
            changed.insert(change.file_path.clone(), change.seq);
            self.files.insert(change.file_path, FileState { version: change.version, deleted: change.deleted });
        }
        self.last_seq = self.last_seq.max(changes.seq);
        Ok(changed)
    }

    /// Saves `content` to `path` with the remembered version.
    pub async fn save(&mut self, path: &str, content: &str, file_type: &str) -> Result<UpsertResult, ClientError> {
        if self.writes == Writes::Table {
            return self.save_to_table(&[(path, file_type, content)]).await.map(|mut saved| saved.remove(0));
        }
        let expected = self.expected_version(path);
        let result = self.client.upsert_project_file(self.project, path, content, file_type, expected).await?;
        self.files.insert(path.to_owned(), FileState { version: result.version, deleted: false });
        Ok(result)
    }

    /// Deletes `path` with the remembered version.
    pub async fn delete(&mut self, path: &str) -> Result<DeleteResult, ClientError> {
        if self.writes == Writes::Table {
            return self.delete_from_table(path).await;
        }
        let expected = self.expected_version(path);
        let result = self.client.delete_project_file(self.project, path, expected).await?;
        self.files.insert(path.to_owned(), FileState { version: result.version, deleted: true });
        Ok(result)
    }

    /// `generateProjectStructure()`: writes every file in one bulk (one seq, one `bulk:apply`),
    /// each with its remembered version.
    pub async fn generate_project_structure(
        &mut self,
        files: &[(&str, &str, &str)],
    ) -> Result<BulkResult, ClientError> {
        if self.writes == Writes::Table {
            let saved = self.save_to_table(files).await?;
            let files = saved
                .iter()
                .map(|s| BulkFileResult {
                    file_path: s.file_path.clone(),
                    version: s.version,
                    content_hash: Some(s.content_hash.clone()),
                    deleted: false,
                    noop: s.noop,
                })
                .collect();
            return Ok(BulkResult { seq: self.last_seq, files });
        }
        let entries: Vec<BulkEntry> = files
            .iter()
            .map(|(path, file_type, content)| {
                BulkEntry::upsert(*path, *file_type, *content).expecting(self.expected_version(path))
            })
            .collect();
        let result = self.client.bulk_upsert_project_files(self.project, &entries).await?;
        for file in &result.files {
            self.files.insert(file.file_path.clone(), FileState { version: file.version, deleted: file.deleted });
        }
        Ok(result)
    }

    /// The unmigrated frontend's `.upsert(rows, { onConflict: 'project_id,path' })`: one table
    /// write (a versioned write per row, each with its own seq), then a catch-up to learn the
    /// versions. A row whose content was already there is a no-op, as with the RPC.
    async fn save_to_table(&mut self, files: &[(&str, &str, &str)]) -> Result<Vec<UpsertResult>, ClientError> {
        let rows: Vec<Value> = files
            .iter()
            .map(|(path, file_type, content)| {
                json!({"project_id": self.project, "path": path, "type": file_type, "content": content})
            })
            .collect();
        let conflict = [("on_conflict", "project_id,path".to_owned())];
        let body = Value::Array(rows);
        self.client
            .write_table(http::Method::POST, WRITABLE_RELATION, &conflict, "resolution=merge-duplicates", Some(&body))
            .await?;
        let changed = self.catch_up().await?;
        let mut saved = Vec::with_capacity(files.len());
        for (path, _, content) in files {
            let version = self.files.get(*path).map_or(0, |f| f.version);
            let seq = changed.get(*path).copied();
            saved.push(UpsertResult {
                file_path: (*path).to_owned(),
                version,
                content_hash: content_hash(content),
                seq: seq.unwrap_or(self.last_seq),
                noop: seq.is_none(),
            });
        }
        Ok(saved)
    }

    /// The unmigrated frontend's `.delete().eq('project_id', ..).eq('path', ..)`: a tombstone
    /// when the file is live, nothing when it is already deleted, 404 when it never was.
    async fn delete_from_table(&mut self, path: &str) -> Result<DeleteResult, ClientError> {
        let filters = [("project_id", format!("eq.{}", self.project)), ("path", format!("eq.{path}"))];
        let deleted = self.client.write_table(http::Method::DELETE, WRITABLE_RELATION, &filters, "", None).await?;
        let changed = self.catch_up().await?;
        match self.files.get(path).copied() {
            Some(state) if state.deleted => Ok(DeleteResult {
                file_path: path.to_owned(),
                version: state.version,
                seq: changed.get(path).copied().unwrap_or(self.last_seq),
                noop: deleted.is_empty(),
            }),
            _ => Err(ClientError::Api {
                status: 404,
                body: Box::new(ErrorBody {
                    code: "PT404".into(),
                    message: format!("file {path} not found in project {}", self.project),
                    details: None,
                    hint: None,
                }),
            }),
        }
    }
}

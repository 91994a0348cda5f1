//! The frontend store of plan task 1.5: writes go through the RPCs, each path's version is
//! remembered and sent as `expected_version`, and project generation goes through the bulk RPC.

use crate::client::FsyncClient;
use crate::error::ClientError;
use fsync_protocol::api::{BulkEntry, BulkResult, DeleteResult, UpsertResult};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

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
    files: BTreeMap<String, FileState>,
    last_seq: i64,
    loaded: bool,
}

impl ProjectStore {
    pub fn new(client: Arc<FsyncClient>, project: Uuid) -> Self {
        ProjectStore { client, project, files: BTreeMap::new(), last_seq: 0, loaded: false }
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
        let changes = self.client.list_changes_since(self.project, self.last_seq).await?;
        for change in changes.changes {
            self.files.insert(change.file_path, FileState { version: change.version, deleted: change.deleted });
        }
        self.last_seq = self.last_seq.max(changes.seq);
        Ok(())
    }

    /// Saves `content` to `path` with the remembered version.
    pub async fn save(&mut self, path: &str, content: &str, file_type: &str) -> Result<UpsertResult, ClientError> {
        let expected = self.expected_version(path);
        let result = self.client.upsert_project_file(self.project, path, content, file_type, expected).await?;
        self.files.insert(path.to_owned(), FileState { version: result.version, deleted: false });
        Ok(result)
    }

    /// Deletes `path` with the remembered version.
    pub async fn delete(&mut self, path: &str) -> Result<DeleteResult, ClientError> {
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
}

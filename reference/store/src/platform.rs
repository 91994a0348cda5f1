//! The platform port: what Storage, the snapshot function and the orchestrator need from the
//! source of truth beyond RPCs and reads (DESIGN §9). PostgreSQL implements it with SQL
//! (`fsync_reference::pg`), the model in memory (`fsync_model`); the differential tests hold the
//! two to the same answers.
//!
//! - a consistent **snapshot read**: a project's `seq` and its live files at exactly that `seq`;
//! - **object rows** as Supabase Storage keeps them in `storage.objects`, with who may record,
//!   see and delete which row decided as its row level security policies decide;
//! - **membership**: whether a caller may see a project at all;
//! - **session records** ([`SessionRecord`]): what every instance knows of every session.
//!
//! The trait is object safe (boxed futures): the platform holds it as `Arc<dyn PlatformStore>`.

use crate::caller::RequestAuth;
use crate::error::ApiError;
use crate::sessions::SessionRecord;
use crate::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One live file of a snapshot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: String,
    pub file_type: String,
    /// `None` for a binary file, whose bytes are in storage under `storage_key`.
    pub content: Option<String>,
    pub content_hash: Option<String>,
    pub version: i32,
    /// `project-files/{project}/{sha256}` for a binary file.
    pub storage_key: Option<String>,
}

/// A project read at one consistent point: its `seq`, then its live files at that `seq`.
pub trait SnapshotRead: Send {
    /// The project's `seq` at the point of the read.
    fn seq(&self) -> i64;
    /// The next live file, in bytewise path order; `None` after the last.
    fn next_file(&mut self) -> BoxFuture<'_, Result<Option<SnapshotFile>, ApiError>>;
}

/// What Storage, the snapshot function and the orchestrator read and write.
pub trait PlatformStore: Send + Sync + 'static {
    /// Opens a consistent read of `project`; `None` when there is no such project. Dropping the
    /// read before its last file ends it.
    fn open_snapshot(&self, project: Uuid) -> BoxFuture<'_, Result<Option<Box<dyn SnapshotRead>>, ApiError>>;

    /// Whether `bucket` exists, and then whether it is public.
    fn bucket_public<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, Result<Option<bool>, ApiError>>;

    /// Inserts (with `upsert`, replaces) the row of `bucket/name` as `auth`, under the storage
    /// policies; its id, or `None` when it exists and `upsert` is off.
    fn record_object<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
        metadata: &'a Value,
        upsert: bool,
    ) -> BoxFuture<'a, Result<Option<Uuid>, ApiError>>;

    /// Records (or replaces) `bucket/name` with the service role's rights.
    fn record_object_as_service<'a>(
        &'a self,
        bucket: &'a str,
        name: &'a str,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Removes the row of `bucket/name`, no policy applying: an object whose bytes could not be
    /// stored, or a pruned snapshot's.
    fn forget_object<'a>(&'a self, bucket: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Deletes the row of `bucket/name` as `auth`; whether there was one it could delete.
    fn delete_object_row<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// Whether `auth` may see the row of `bucket/name` (what signing and authenticated reads need).
    fn object_visible<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// The stored content type of `bucket/name` (`application/octet-stream` when none was
    /// recorded), or `None` when there is no such object.
    fn object_mimetype<'a>(&'a self, bucket: &'a str, name: &'a str)
        -> BoxFuture<'a, Result<Option<String>, ApiError>>;

    /// Whether `auth` may see `project` (its members, and the service role).
    fn is_member<'a>(&'a self, auth: &'a RequestAuth, project: Uuid) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// Records a new session, unless its starter already has `max_live` live sessions (on any
    /// instance): whether it was recorded. The check and the insert are one step. A project
    /// that no longer exists is [`crate::sessions::project_gone`].
    fn insert_session<'a>(
        &'a self,
        record: &'a SessionRecord,
        max_live: usize,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// Replaces a session's record with what its instance now knows.
    fn save_session<'a>(&'a self, record: &'a SessionRecord) -> BoxFuture<'a, Result<(), ApiError>>;

    /// A session's record.
    fn session(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SessionRecord>, ApiError>>;

    /// Fails every live session `instance` runs, with `reason` at `now_s`: what an instance does
    /// when it starts, since it no longer watches agents it started before. Which, in id order.
    fn fail_sessions_of<'a>(
        &'a self,
        instance: &'a str,
        reason: &'a str,
        now_s: u64,
    ) -> BoxFuture<'a, Result<Vec<Uuid>, ApiError>>;

    /// Forgets the sessions that ended before `ended_before_s` (wall seconds). How many.
    fn prune_sessions(&self, ended_before_s: u64) -> BoxFuture<'_, Result<u64, ApiError>>;

    /// Notes that a URL for a snapshot is being signed: records the snapshot if it has no record
    /// (superseded at once when a later one is recorded or its project is gone, and superseding
    /// the project's earlier ones), and keeps the latest expiry of its URLs. `false` when the
    /// snapshot is being removed: no URL may be signed for it.
    fn note_snapshot_signed<'a>(&'a self, signed: &'a SnapshotSigned) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// Claims the snapshots that may be removed (see [`PruneQuery`]): from here on no URL is
    /// signed for them. Their keys, in key order.
    fn claim_prunable_snapshots(&self, query: PruneQuery) -> BoxFuture<'_, Result<Vec<SnapshotKey>, ApiError>>;

    /// Forgets a snapshot's record (after its objects are removed).
    fn forget_snapshot<'a>(&'a self, key: &'a SnapshotKey) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// A snapshot read over files already in memory (the model's, and tests').
pub struct FilesRead {
    seq: i64,
    files: std::vec::IntoIter<SnapshotFile>,
}

impl FilesRead {
    /// `files` must be sorted bytewise by path.
    pub fn new(seq: i64, files: Vec<SnapshotFile>) -> FilesRead {
        debug_assert!(files.windows(2).all(|w| w[0].path.as_bytes() < w[1].path.as_bytes()), "sorted paths");
        FilesRead { seq, files: files.into_iter() }
    }
}

impl SnapshotRead for FilesRead {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn next_file(&mut self) -> BoxFuture<'_, Result<Option<SnapshotFile>, ApiError>> {
        let next = self.files.next();
        Box::pin(async move { Ok(next) })
    }
}

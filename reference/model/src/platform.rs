//! The platform port on the model: snapshot reads at one consistent point (the state lock),
//! object rows under the storage policies (`storage.rs`), membership as the `projects` policy
//! decides (the read surface's own answer).

use crate::state::Caller;
use crate::MemStore;
use fsync_store::data::{Filter, FilterOp, ReadQuery};
use fsync_store::error::ApiError;
use fsync_store::platform::{BoxFuture, FilesRead, PlatformStore, SnapshotFile, SnapshotRead};
use fsync_store::sessions::SessionRecord;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use fsync_store::RequestAuth;
use serde_json::Value;
use uuid::Uuid;

fn caller(auth: &RequestAuth) -> Caller {
    Caller { role: auth.role.clone(), claims: auth.claims.clone() }
}

impl MemStore {
    /// The project's seq and live files, read under one lock.
    fn snapshot_read(&self, project: Uuid) -> Option<FilesRead> {
        let state = self.lock();
        let seq = state.projects.get(&project)?.seq;
        let files = state
            .files
            .range((project, String::new())..)
            .take_while(|((p, _), _)| *p == project)
            .filter_map(|((_, path), rows)| {
                let head = rows.last().filter(|h| !h.deleted)?;
                Some(SnapshotFile {
                    path: path.clone(),
                    file_type: head.file_type.clone(),
                    content: head.content.clone(),
                    content_hash: head.content_hash.clone(),
                    version: head.version,
                    storage_key: head.stored.as_ref().map(|s| s.key.clone()),
                })
            })
            .collect();
        Some(FilesRead::new(seq, files))
    }
}

impl PlatformStore for MemStore {
    fn open_snapshot(&self, project: Uuid) -> BoxFuture<'_, Result<Option<Box<dyn SnapshotRead>>, ApiError>> {
        let read = self.snapshot_read(project).map(|r| Box::new(r) as Box<dyn SnapshotRead>);
        Box::pin(async move { Ok(read) })
    }

    fn bucket_public<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, Result<Option<bool>, ApiError>> {
        let public = self.lock().bucket_public(bucket);
        Box::pin(async move { Ok(public) })
    }

    fn record_object<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
        metadata: &'a Value,
        upsert: bool,
    ) -> BoxFuture<'a, Result<Option<Uuid>, ApiError>> {
        let recorded = self.lock().record_object(&caller(auth), bucket, name, metadata, upsert);
        Box::pin(async move { recorded })
    }

    fn record_object_as_service<'a>(
        &'a self,
        bucket: &'a str,
        name: &'a str,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        self.lock().record_object_as_service(bucket, name, metadata);
        Box::pin(async move { Ok(()) })
    }

    fn forget_object<'a>(&'a self, bucket: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        self.lock().forget_object(bucket, name);
        Box::pin(async move { Ok(()) })
    }

    fn delete_object_row<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        let deleted = self.lock().delete_object_row(&caller(auth), bucket, name);
        Box::pin(async move { Ok(deleted) })
    }

    fn object_visible<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        let visible = self.lock().object_visible(&caller(auth), bucket, name);
        Box::pin(async move { Ok(visible) })
    }

    fn object_mimetype<'a>(
        &'a self,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        let mimetype = self.lock().object_mimetype(bucket, name);
        Box::pin(async move { Ok(mimetype) })
    }

    fn is_member<'a>(&'a self, auth: &'a RequestAuth, project: Uuid) -> BoxFuture<'a, Result<bool, ApiError>> {
        let query = ReadQuery {
            relation: "projects".into(),
            columns: Some(vec!["id".into()]),
            filters: vec![Filter {
                column: "id".into(),
                op: FilterOp::Eq,
                negated: false,
                values: vec![project.to_string()],
            }],
            ..ReadQuery::default()
        };
        let seen = crate::read::read(&self.lock(), auth, &query).map(|rows| rows.count > 0);
        Box::pin(async move { seen })
    }

    fn insert_session<'a>(
        &'a self,
        record: &'a SessionRecord,
        max_live: usize,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        let inserted = self.insert_session_now(record, max_live);
        Box::pin(async move { inserted })
    }

    fn save_session<'a>(&'a self, record: &'a SessionRecord) -> BoxFuture<'a, Result<(), ApiError>> {
        self.save_session_now(record);
        Box::pin(async { Ok(()) })
    }

    fn session(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SessionRecord>, ApiError>> {
        let record = self.session_now(id);
        Box::pin(async move { Ok(record) })
    }

    fn fail_sessions_of<'a>(
        &'a self,
        instance: &'a str,
        reason: &'a str,
        now_s: u64,
    ) -> BoxFuture<'a, Result<Vec<Uuid>, ApiError>> {
        let failed = self.fail_sessions_of_now(instance, reason, now_s);
        Box::pin(async move { Ok(failed) })
    }

    fn prune_sessions(&self, ended_before_s: u64) -> BoxFuture<'_, Result<u64, ApiError>> {
        let pruned = self.prune_sessions_now(ended_before_s);
        Box::pin(async move { Ok(pruned) })
    }

    fn note_snapshot_signed<'a>(&'a self, signed: &'a SnapshotSigned) -> BoxFuture<'a, Result<bool, ApiError>> {
        let noted = self.note_snapshot_signed_now(signed);
        Box::pin(async move { Ok(noted) })
    }

    fn claim_prunable_snapshots(&self, query: PruneQuery) -> BoxFuture<'_, Result<Vec<SnapshotKey>, ApiError>> {
        let claimed = self.claim_prunable_snapshots_now(query);
        Box::pin(async move { Ok(claimed) })
    }

    fn forget_snapshot<'a>(&'a self, key: &'a SnapshotKey) -> BoxFuture<'a, Result<(), ApiError>> {
        self.forget_snapshot_now(key);
        Box::pin(async { Ok(()) })
    }
}

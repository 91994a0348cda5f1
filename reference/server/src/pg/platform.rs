//! The platform port on PostgreSQL: the snapshot read (one REPEATABLE READ transaction), the
//! `storage.objects` rows (run as the caller through [`PgStore::query_as`], so the storage policies
//! decide) and the membership check (the `projects` policy decides); session and snapshot
//! records are in `sessions.rs` and `snapshots.rs`.

use super::{internal, PgStore, NO_HEADERS};
use deadpool_postgres::Pool;
use fsync_store::error::ApiError;
use fsync_store::platform::{BoxFuture, PlatformStore, SnapshotFile, SnapshotRead};
use fsync_store::sessions::SessionRecord;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use fsync_store::RequestAuth;
use futures_util::{pin_mut, TryStreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Snapshot rows read ahead of the zip writer.
const SNAPSHOT_READ_AHEAD: usize = 32;

impl PlatformStore for PgStore {
    fn open_snapshot(&self, project: Uuid) -> BoxFuture<'_, Result<Option<Box<dyn SnapshotRead>>, ApiError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let (seq_tx, seq_rx) = oneshot::channel();
            let (go_tx, go_rx) = oneshot::channel();
            let (rows_tx, rows_rx) = mpsc::channel(SNAPSHOT_READ_AHEAD);
            // The transaction lives in its own task, which ends when the read is dropped.
            tokio::spawn(read_snapshot(pool, project, seq_tx, go_rx, rows_tx));
            match seq_rx.await {
                Ok(Ok(Some(seq))) => {
                    Ok(Some(Box::new(PgSnapshot { seq, go: Some(go_tx), rows: rows_rx }) as Box<dyn SnapshotRead>))
                }
                Ok(Ok(None)) => Ok(None),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ApiError::internal("the snapshot read stopped before it read the project")),
            }
        })
    }

    fn bucket_public<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, Result<Option<bool>, ApiError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(ApiError::unavailable)?;
            let row = client
                .query_opt("SELECT coalesce(public, false) FROM storage.buckets WHERE id = $1", &[&bucket])
                .await
                .map_err(internal)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn record_object<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
        metadata: &'a Value,
        upsert: bool,
    ) -> BoxFuture<'a, Result<Option<Uuid>, ApiError>> {
        Box::pin(async move {
            let statement = if upsert {
                "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, metadata)
                 VALUES ($1, $2, auth.uid(), auth.uid()::text, $3)
                 ON CONFLICT (bucket_id, name) DO UPDATE
                   SET metadata = excluded.metadata, owner = excluded.owner, owner_id = excluded.owner_id,
                       updated_at = now(), last_accessed_at = now()
                 RETURNING id"
            } else {
                "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, metadata)
                 VALUES ($1, $2, auth.uid(), auth.uid()::text, $3)
                 ON CONFLICT (bucket_id, name) DO NOTHING
                 RETURNING id"
            };
            let path = format!("/object/{bucket}/{name}");
            let rows =
                self.query_as(auth, false, ("POST", &path, NO_HEADERS), statement, &[&bucket, &name, metadata]).await?;
            Ok(rows.first().map(|r| r.get(0)))
        })
    }

    fn record_object_as_service<'a>(
        &'a self,
        bucket: &'a str,
        name: &'a str,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(ApiError::unavailable)?;
            client
                .execute(
                    "INSERT INTO storage.objects (bucket_id, name, metadata) VALUES ($1, $2, $3)
                     ON CONFLICT (bucket_id, name) DO UPDATE SET metadata = excluded.metadata, updated_at = now()",
                    &[&bucket, &name, metadata],
                )
                .await
                .map_err(internal)?;
            Ok(())
        })
    }

    fn forget_object<'a>(&'a self, bucket: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(ApiError::unavailable)?;
            client
                .execute("DELETE FROM storage.objects WHERE bucket_id = $1 AND name = $2", &[&bucket, &name])
                .await
                .map_err(internal)?;
            Ok(())
        })
    }

    fn delete_object_row<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            let path = format!("/object/{bucket}/{name}");
            let statement = "DELETE FROM storage.objects WHERE bucket_id = $1 AND name = $2 RETURNING id";
            let rows = self.query_as(auth, false, ("DELETE", &path, NO_HEADERS), statement, &[&bucket, &name]).await?;
            Ok(!rows.is_empty())
        })
    }

    fn object_visible<'a>(
        &'a self,
        auth: &'a RequestAuth,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            let path = format!("/object/{bucket}/{name}");
            let statement = "SELECT id FROM storage.objects WHERE bucket_id = $1 AND name = $2";
            let rows = self.query_as(auth, true, ("GET", &path, NO_HEADERS), statement, &[&bucket, &name]).await?;
            Ok(!rows.is_empty())
        })
    }

    fn object_mimetype<'a>(
        &'a self,
        bucket: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(ApiError::unavailable)?;
            let row = client
                .query_opt(
                    "SELECT coalesce(metadata ->> 'mimetype', 'application/octet-stream')
                     FROM storage.objects WHERE bucket_id = $1 AND name = $2",
                    &[&bucket, &name],
                )
                .await
                .map_err(internal)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn is_member<'a>(&'a self, auth: &'a RequestAuth, project: Uuid) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            let statement = "SELECT 1 FROM public.projects WHERE id = $1";
            let rows = self.query_as(auth, true, ("GET", "/projects", NO_HEADERS), statement, &[&project]).await?;
            Ok(!rows.is_empty())
        })
    }

    fn insert_session<'a>(
        &'a self,
        record: &'a SessionRecord,
        max_live: usize,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(self.insert_session_pg(record, max_live))
    }

    fn save_session<'a>(&'a self, record: &'a SessionRecord) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.save_session_pg(record))
    }

    fn session(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SessionRecord>, ApiError>> {
        Box::pin(self.session_pg(id))
    }

    fn fail_sessions_of<'a>(
        &'a self,
        instance: &'a str,
        reason: &'a str,
        now_s: u64,
    ) -> BoxFuture<'a, Result<Vec<Uuid>, ApiError>> {
        Box::pin(self.fail_sessions_of_pg(instance, reason, now_s))
    }

    fn prune_sessions(&self, ended_before_s: u64) -> BoxFuture<'_, Result<u64, ApiError>> {
        Box::pin(self.prune_sessions_pg(ended_before_s))
    }

    fn note_snapshot_signed<'a>(&'a self, signed: &'a SnapshotSigned) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(self.note_snapshot_signed_pg(signed))
    }

    fn claim_prunable_snapshots(&self, query: PruneQuery) -> BoxFuture<'_, Result<Vec<SnapshotKey>, ApiError>> {
        Box::pin(self.claim_prunable_snapshots_pg(query))
    }

    fn forget_snapshot<'a>(&'a self, key: &'a SnapshotKey) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.forget_snapshot_pg(key))
    }
}

/// A snapshot read whose transaction runs in [`read_snapshot`].
struct PgSnapshot {
    seq: i64,
    /// Tells the reader to stream the rows (dropped unsent: the read ends at the seq).
    go: Option<oneshot::Sender<()>>,
    rows: mpsc::Receiver<Result<SnapshotFile, ApiError>>,
}

impl SnapshotRead for PgSnapshot {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn next_file(&mut self) -> BoxFuture<'_, Result<Option<SnapshotFile>, ApiError>> {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        Box::pin(async move { self.rows.recv().await.transpose() })
    }
}

/// One REPEATABLE READ transaction: the project's seq, then (when asked) its live files in
/// bytewise order, so the files are exactly the project at that seq.
async fn read_snapshot(
    pool: Pool,
    project: Uuid,
    seq_tx: oneshot::Sender<Result<Option<i64>, ApiError>>,
    go: oneshot::Receiver<()>,
    rows_tx: mpsc::Sender<Result<SnapshotFile, ApiError>>,
) {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            let _ = seq_tx.send(Err(ApiError::unavailable(e)));
            return;
        }
    };
    let begun = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await;
    let tx = match begun {
        Ok(tx) => tx,
        Err(e) => {
            let _ = seq_tx.send(Err(internal(e)));
            return;
        }
    };
    let seq = tx.query_opt("SELECT seq FROM public.projects WHERE id = $1", &[&project]).await;
    let seq = match seq {
        Ok(row) => row.map(|r| r.get::<_, i64>(0)),
        Err(e) => {
            let _ = seq_tx.send(Err(internal(e)));
            return;
        }
    };
    if seq_tx.send(Ok(seq)).is_err() || seq.is_none() || go.await.is_err() {
        return;
    }
    if let Err(e) = stream_files(&tx, project, &rows_tx).await {
        let _ = rows_tx.send(Err(e)).await;
    }
}

async fn stream_files(
    tx: &deadpool_postgres::Transaction<'_>,
    project: Uuid,
    rows_tx: &mpsc::Sender<Result<SnapshotFile, ApiError>>,
) -> Result<(), ApiError> {
    let rows = tx
        .query_raw(
            "SELECT file_path, file_type, content, content_hash, version, storage_key
             FROM public.project_files
             WHERE project_id = $1 AND is_current_version AND NOT is_deleted
             ORDER BY file_path COLLATE \"C\"",
            [&project],
        )
        .await
        .map_err(internal)?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await.map_err(internal)? {
        let file = SnapshotFile {
            path: row.get(0),
            file_type: row.get(1),
            content: row.get(2),
            content_hash: row.get(3),
            version: row.get(4),
            storage_key: row.get(5),
        };
        if rows_tx.send(Ok(file)).await.is_err() {
            return Ok(()); // the read was dropped
        }
    }
    Ok(())
}

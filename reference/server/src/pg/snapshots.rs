//! Snapshot records in `fsync.project_snapshots` (`0009_snapshots.sql`), through the server's own
//! connection: which stored snapshots exist, when each was built and until when a URL signed for
//! it works, so superseded ones are pruned.

use super::{db_error, PgStore};
use fsync_store::error::ApiError;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};

impl PgStore {
    pub(super) async fn note_snapshot_signed_pg(&self, signed: &SnapshotSigned) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        client
            .execute(
                "INSERT INTO fsync.project_snapshots (project_id, snapshot_id, seq, built_at_s, signed_until_s)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (project_id, snapshot_id) DO UPDATE
                 SET signed_until_s = greatest(project_snapshots.signed_until_s, excluded.signed_until_s)",
                &[&signed.project, &signed.snapshot_id, &signed.seq, &(signed.at_s as i64), &(signed.until_s as i64)],
            )
            .await
            .map_err(internal)?;
        Ok(())
    }

    pub(super) async fn prunable_snapshots_pg(&self, query: PruneQuery) -> Result<Vec<SnapshotKey>, ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let rows = client
            .query(
                "SELECT s.project_id, s.snapshot_id FROM fsync.project_snapshots s
                 WHERE s.signed_until_s < $1
                   AND (NOT EXISTS (SELECT 1 FROM public.projects p WHERE p.id = s.project_id)
                        OR EXISTS (SELECT 1 FROM fsync.project_snapshots later
                                   WHERE later.project_id = s.project_id AND later.seq > s.seq
                                     AND later.built_at_s <= $2))
                 ORDER BY s.seq, s.project_id, s.snapshot_id
                 LIMIT $3",
                &[&(query.now_s as i64), &(query.superseded_before_s as i64), &(query.limit as i64)],
            )
            .await
            .map_err(internal)?;
        Ok(rows.iter().map(|row| SnapshotKey { project: row.get(0), snapshot_id: row.get(1) }).collect())
    }

    pub(super) async fn forget_snapshot_pg(&self, key: &SnapshotKey) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        client
            .execute(
                "DELETE FROM fsync.project_snapshots WHERE project_id = $1 AND snapshot_id = $2",
                &[&key.project, &key.snapshot_id],
            )
            .await
            .map_err(internal)?;
        Ok(())
    }
}

fn internal(error: tokio_postgres::Error) -> ApiError {
    db_error(error, false)
}

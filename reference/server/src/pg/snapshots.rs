//! Snapshot records in `fsync.project_snapshots` (`0009_snapshots.sql`), through the server's own
//! connection: which stored snapshots exist, until when a URL signed for each works, since when
//! each is superseded and whether it is being removed, so superseded ones are pruned.

use super::{internal, PgStore};
use fsync_store::error::ApiError;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};

/// The advisory lock space of one project's snapshot records (`hashtextextended(project, 9)`).
const RECORDS_LOCK_SEED: i64 = 9;

impl PgStore {
    pub(super) async fn note_snapshot_signed_pg(&self, signed: &SnapshotSigned) -> Result<bool, ApiError> {
        let mut client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let tx = client.transaction().await.map_err(internal)?;
        // One project's records change one signing at a time, so two new snapshots recorded at
        // once each see the other: the earlier is superseded whichever commits first.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, $2))",
            &[&signed.project, &RECORDS_LOCK_SEED],
        )
        .await
        .map_err(internal)?;
        let (project, id, seq) = (&signed.project, &signed.snapshot_id, &signed.seq);
        let (at_s, until_s) = (signed.at_s as i64, signed.until_s as i64);
        let noted = tx
            .query_opt(
                "INSERT INTO fsync.project_snapshots AS s
                   (project_id, snapshot_id, seq, built_at_s, signed_until_s, superseded_at_s)
                 VALUES ($1, $2, $3::bigint, $4::bigint, $5::bigint,
                   CASE WHEN NOT EXISTS (SELECT 1 FROM public.projects p WHERE p.id = $1) THEN 0::bigint
                        WHEN EXISTS (SELECT 1 FROM fsync.project_snapshots l
                                     WHERE l.project_id = $1 AND l.seq > $3::bigint) THEN $4::bigint END)
                 ON CONFLICT (project_id, snapshot_id) DO UPDATE
                 SET signed_until_s = greatest(s.signed_until_s, excluded.signed_until_s)
                 WHERE NOT s.removing
                 RETURNING 1",
                &[project, id, seq, &at_s, &until_s],
            )
            .await
            .map_err(internal)?
            .is_some();
        if noted {
            tx.execute(
                "UPDATE fsync.project_snapshots SET superseded_at_s = $3
                 WHERE project_id = $1 AND seq < $2 AND superseded_at_s IS NULL",
                &[project, seq, &at_s],
            )
            .await
            .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(noted)
    }

    pub(super) async fn claim_prunable_snapshots_pg(&self, query: PruneQuery) -> Result<Vec<SnapshotKey>, ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        // Rows a note holds are skipped: that note may be extending them.
        let rows = client
            .query(
                "WITH chosen AS (
                   SELECT project_id, snapshot_id FROM fsync.project_snapshots
                   WHERE superseded_at_s <= $2 AND signed_until_s < $1
                   ORDER BY removing, superseded_at_s, project_id, seq
                   LIMIT $3
                   FOR UPDATE SKIP LOCKED)
                 UPDATE fsync.project_snapshots s SET removing = true
                 FROM chosen c
                 WHERE s.project_id = c.project_id AND s.snapshot_id = c.snapshot_id
                 RETURNING s.project_id, s.snapshot_id",
                &[&(query.expired_before_s as i64), &(query.superseded_before_s as i64), &(query.limit as i64)],
            )
            .await
            .map_err(internal)?;
        let mut keys: Vec<SnapshotKey> =
            rows.iter().map(|row| SnapshotKey { project: row.get(0), snapshot_id: row.get(1) }).collect();
        keys.sort();
        Ok(keys)
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

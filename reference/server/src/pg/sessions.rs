//! Session records in `fsync.preview_sessions` (`0008_sessions.sql`), through the server's own
//! connection: the orchestrator's bookkeeping, which no API role can read or write.

use super::{internal, PgStore};
use fsync_protocol::snapshot::SessionView;
use fsync_store::error::ApiError;
use fsync_store::sessions::{project_gone, SessionRecord};
use uuid::Uuid;

/// The statuses of a live session, as the table spells them.
const LIVE: &str = "('starting', 'hydrating', 'running', 'behind')";

impl PgStore {
    pub(super) async fn insert_session_pg(&self, record: &SessionRecord, max_live: usize) -> Result<bool, ApiError> {
        let mut client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let tx = client.transaction().await.map_err(internal)?;
        // One starter's inserts go one at a time, so two at once cannot both pass the cap.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", &[&record.started_by])
            .await
            .map_err(internal)?;
        // A project deleted since the caller's access was checked: not found, as on the model.
        let project = record.view.project_id;
        let statement = "SELECT 1 FROM public.projects WHERE id = $1 FOR KEY SHARE";
        if tx.query_opt(statement, &[&project]).await.map_err(internal)?.is_none() {
            return Err(project_gone(project));
        }
        let live: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM fsync.preview_sessions WHERE started_by = $1 AND status IN {LIVE}"),
                &[&record.started_by],
            )
            .await
            .map_err(internal)?
            .get(0);
        if live as usize >= max_live {
            return Ok(false);
        }
        let view = serde_json::to_value(&record.view).map_err(ApiError::internal)?;
        tx.execute(
            "INSERT INTO fsync.preview_sessions (id, project_id, started_by, instance, status, view, ended_at_s)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &record.view.id,
                &record.view.project_id,
                &record.started_by,
                &record.instance,
                &record.view.status.as_str(),
                &view,
                &record.ended_at_s.map(|s| s as i64),
            ],
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(true)
    }

    pub(super) async fn save_session_pg(&self, record: &SessionRecord) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let view = serde_json::to_value(&record.view).map_err(ApiError::internal)?;
        // A record that ended (stopped through another instance, a member's removal) stays ended:
        // an instance that has not noticed yet must not write its live view over it.
        client
            .execute(
                &format!(
                    "UPDATE fsync.preview_sessions SET status = $2, view = $3, ended_at_s = $4
                     WHERE id = $1 AND (status IN {LIVE} OR $2 NOT IN {LIVE})"
                ),
                &[&record.view.id, &record.view.status.as_str(), &view, &record.ended_at_s.map(|s| s as i64)],
            )
            .await
            .map_err(internal)?;
        Ok(())
    }

    pub(super) async fn session_pg(&self, id: Uuid) -> Result<Option<SessionRecord>, ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let row = client
            .query_opt(
                "SELECT view, started_by, instance, ended_at_s FROM fsync.preview_sessions WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(internal)?;
        let Some(row) = row else { return Ok(None) };
        let view: SessionView = serde_json::from_value(row.get(0)).map_err(ApiError::internal)?;
        let ended: Option<i64> = row.get(3);
        Ok(Some(SessionRecord {
            view,
            started_by: row.get(1),
            instance: row.get(2),
            ended_at_s: ended.map(|s| s.max(0) as u64),
        }))
    }

    pub(super) async fn fail_sessions_of_pg(
        &self,
        instance: &str,
        reason: &str,
        now_s: u64,
    ) -> Result<Vec<Uuid>, ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let rows = client
            .query(
                &format!(
                    "UPDATE fsync.preview_sessions
                     SET status = 'failed', ended_at_s = $3,
                         view = view || jsonb_build_object('status', 'failed', 'reason', $2::text)
                     WHERE instance = $1 AND status IN {LIVE}
                     RETURNING id"
                ),
                &[&instance, &reason, &(now_s as i64)],
            )
            .await
            .map_err(internal)?;
        let mut failed: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
        failed.sort();
        Ok(failed)
    }

    pub(super) async fn prune_sessions_pg(&self, ended_before_s: u64) -> Result<u64, ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        client
            .execute("DELETE FROM fsync.preview_sessions WHERE ended_at_s < $1", &[&(ended_before_s as i64)])
            .await
            .map_err(internal)
    }
}

//! Signing snapshot URLs, and pruning the snapshots nothing can download any more (issue 13).
//!
//! A snapshot is recorded when it is built (`fsync.project_snapshots`), and every URL the server
//! signs for it is noted in its record, which keeps the latest expiry. A snapshot is removed, its manifest first, then its zip, then
//! its record, once:
//! - every URL signed for it has expired, and
//! - its project is gone, or a later snapshot of the project was built at least
//!   [`SUPERSEDED_KEPT_FOR`] ago. A build picks a stored snapshot only when it is at the
//!   project's `seq` as its read saw it; once a later one exists, only a build whose read began
//!   before that can still pick it, and such a build signs well within that time.
//!
//! The newest snapshot of a live project always stays: sessions started while nothing changes
//! reuse it. Each new build sweeps up to [`PRUNE_BATCH`] snapshots of any project, so the store
//! holds, besides each project's newest, only snapshots some URL may still fetch.

use crate::platform::Platform;
use fsync_protocol::snapshot::{
    parse_snapshot_object_name, snapshot_manifest_name, snapshot_zip_name, Manifest, SNAPSHOT_BUCKET,
};
use fsync_store::error::ApiError;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use std::time::Duration;

/// How long a superseded snapshot stays after its successor was built (when no URL signed for
/// it lives longer).
pub const SUPERSEDED_KEPT_FOR: Duration = Duration::from_secs(fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S);
/// Most snapshots one sweep removes.
pub const PRUNE_BATCH: usize = 16;

/// A signed download URL of `manifest`'s zip for `ttl_s` seconds; the snapshot is kept at least
/// as long.
pub async fn signed_zip_url(platform: &Platform, manifest: &Manifest, ttl_s: u64) -> Result<String, ApiError> {
    let (project, id) = (manifest.project_id, &manifest.snapshot_id);
    note_signed(platform, project, id, manifest.seq, ttl_s).await?;
    Ok(platform.signed_url(SNAPSHOT_BUCKET, &snapshot_zip_name(project, id), ttl_s))
}

/// Records a snapshot just built (no URL signed for it yet).
pub async fn note_built(platform: &Platform, manifest: &Manifest) -> Result<(), ApiError> {
    note_signed(platform, manifest.project_id, &manifest.snapshot_id, manifest.seq, 0).await
}

/// Notes a URL signed through Storage for an object of the snapshot bucket, if its name is a
/// snapshot's.
pub async fn note_signed_object(platform: &Platform, name: &str, ttl_s: u64) -> Result<(), ApiError> {
    match parse_snapshot_object_name(name) {
        Some((project, id, seq)) => note_signed(platform, project, &id, seq, ttl_s).await,
        None => Ok(()),
    }
}

async fn note_signed(
    platform: &Platform,
    project: uuid::Uuid,
    snapshot_id: &str,
    seq: i64,
    ttl_s: u64,
) -> Result<(), ApiError> {
    let at_s = platform.sources.wall_s();
    let signed = SnapshotSigned { project, snapshot_id: snapshot_id.to_owned(), seq, at_s, until_s: at_s + ttl_s };
    platform.data.note_snapshot_signed(&signed).await
}

/// Removes up to [`PRUNE_BATCH`] snapshots that nothing can download any more; how many.
pub async fn prune(platform: &Platform) -> Result<usize, ApiError> {
    let now_s = platform.sources.wall_s();
    let query = PruneQuery {
        now_s,
        superseded_before_s: now_s.saturating_sub(SUPERSEDED_KEPT_FOR.as_secs()),
        limit: PRUNE_BATCH,
    };
    let keys = platform.data.prunable_snapshots(query).await?;
    for key in &keys {
        remove(platform, key).await?;
    }
    if !keys.is_empty() {
        tracing::info!(removed = keys.len(), "pruned superseded snapshots");
    }
    Ok(keys.len())
}

/// Removes one snapshot. Its manifest goes first: without it the snapshot is never reused. Its
/// record goes last, so a removal cut short is finished by a later sweep.
async fn remove(platform: &Platform, key: &SnapshotKey) -> Result<(), ApiError> {
    let (project, id) = (key.project, &key.snapshot_id);
    for name in [snapshot_manifest_name(project, id), snapshot_zip_name(project, id)] {
        platform.storage.delete(SNAPSHOT_BUCKET, &name).await.map_err(ApiError::internal)?;
        platform.data.forget_object(SNAPSHOT_BUCKET, &name).await?;
    }
    platform.data.forget_snapshot(key).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::PgStore;
    use crate::storage::Storage;
    use fsync_protocol::jwt::Secret;
    use fsync_store::data::{RpcCall, Store};
    use fsync_store::{RequestAuth, Sources};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use uuid::Uuid;

    struct World {
        _db: fsync_testkit::TestDb,
        _dir: tempfile::TempDir,
        db: tokio_postgres::Client,
        pg: PgStore,
        platform: Platform,
        owner: Uuid,
        edits: std::sync::atomic::AtomicU64,
    }

    async fn world() -> World {
        let db = fsync_testkit::TestDb::migrated().await.expect("a test database");
        let client = db.connect().await.unwrap();
        let owner = Uuid::from_u128(0xA);
        client.execute("INSERT INTO public.user_profiles (id) VALUES ($1)", &[&owner]).await.unwrap();
        let pg = PgStore::connect(&db.url).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_with(&format!("file://{}", dir.path().display()), |_| None).unwrap();
        let config = crate::config::Settings::from_lookup(|_| None).orchestrator();
        let sources = Sources::seeded(1, 1_700_000_000);
        let secret = Secret::new(crate::config::DEV_JWT_SECRET);
        let platform = Platform::new(Arc::new(pg.clone()), secret, storage, config, sources, Arc::default());
        World { _db: db, _dir: dir, db: client, pg, platform, owner, edits: Default::default() }
    }

    impl World {
        async fn project(&self) -> Uuid {
            let row = self
                .db
                .query_one("INSERT INTO public.projects (name, owner_id) VALUES ('p', $1) RETURNING id", &[&self.owner])
                .await
                .unwrap();
            row.get(0)
        }

        /// Writes a file (the project's seq goes up by one) and builds its snapshot, which
        /// sweeps; the new snapshot's seq.
        async fn edit_and_build(&self, project: Uuid) -> i64 {
            let Value::Object(args) = json!({"project_uuid": project, "p_file_path": "a.ts",
                "p_content": format!("edit {}", self.edits.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                "p_file_type": "typescript"})
            else {
                unreachable!()
            };
            let call = RpcCall { function: "upsert_project_file".into(), args, read_only: false };
            self.pg.rpc(&RequestAuth::service(self.platform.sources.wall_s()), call).await.unwrap();
            let (manifest, reused) = crate::snapshot::build_or_reuse(&self.platform, project).await.unwrap();
            assert!(!reused);
            manifest.seq
        }

        /// The seqs whose zip, manifest, object rows and record are all there; panics on a
        /// snapshot only partly there.
        async fn stored(&self, project: Uuid) -> Vec<i64> {
            let records: Vec<i64> = self
                .db
                .query("SELECT seq FROM fsync.project_snapshots WHERE project_id = $1 ORDER BY seq", &[&project])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            for seq in 0..=8 {
                let id = fsync_protocol::snapshot::snapshot_id(seq);
                let mut there = Vec::new();
                for name in [snapshot_zip_name(project, &id), snapshot_manifest_name(project, &id)] {
                    there.push(self.platform.storage.exists(SNAPSHOT_BUCKET, &name).await.unwrap());
                    let rows = self
                        .db
                        .query(
                            "SELECT 1 FROM storage.objects WHERE bucket_id = $1 AND name = $2",
                            &[&SNAPSHOT_BUCKET, &name],
                        )
                        .await
                        .unwrap();
                    there.push(!rows.is_empty());
                }
                there.push(records.contains(&seq));
                assert!(there.iter().all(|t| *t == there[0]), "snapshot {seq} is only partly there: {there:?}");
            }
            records
        }
    }

    async fn advance(seconds: u64) {
        tokio::time::advance(Duration::from_secs(seconds)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_superseded_snapshot_goes_once_its_urls_expired_and_its_successor_is_old_enough() {
        let w = world().await;
        let project = w.project().await;
        assert_eq!(w.edit_and_build(project).await, 1);
        let (first, _) = crate::snapshot::build_or_reuse(&w.platform, project).await.unwrap();
        signed_zip_url(&w.platform, &first, 60).await.unwrap();
        assert_eq!(w.edit_and_build(project).await, 2);
        assert_eq!(w.stored(project).await, [1, 2], "both are new");

        advance(61).await;
        assert_eq!(w.edit_and_build(project).await, 3);
        assert_eq!(w.stored(project).await, [1, 2, 3], "1's URL expired, but 2 was built only 61 s ago");

        advance(SUPERSEDED_KEPT_FOR.as_secs()).await;
        assert_eq!(w.edit_and_build(project).await, 4);
        assert_eq!(w.stored(project).await, [3, 4], "1 and 2 were superseded long enough ago");

        // A URL signed through Storage keeps its snapshot too.
        let name = snapshot_zip_name(project, "seq-3");
        note_signed_object(&w.platform, &name, 4 * SUPERSEDED_KEPT_FOR.as_secs()).await.unwrap();
        advance(SUPERSEDED_KEPT_FOR.as_secs() + 1).await;
        assert_eq!(w.edit_and_build(project).await, 5);
        assert_eq!(w.stored(project).await, [3, 4, 5], "4 was superseded just now");
        advance(SUPERSEDED_KEPT_FOR.as_secs() + 1).await;
        assert_eq!(w.edit_and_build(project).await, 6);
        assert_eq!(w.stored(project).await, [3, 5, 6], "4 went; 3 is still signed");
        advance(SUPERSEDED_KEPT_FOR.as_secs() + 1).await;
        assert_eq!(w.edit_and_build(project).await, 7);
        assert_eq!(w.stored(project).await, [3, 6, 7], "3's URL lives yet");

        // Nothing changes: the newest is reused, however old.
        advance(10 * SUPERSEDED_KEPT_FOR.as_secs()).await;
        let (newest, reused) = crate::snapshot::build_or_reuse(&w.platform, project).await.unwrap();
        assert_eq!((newest.seq, reused), (7, true));
        assert_eq!(prune(&w.platform).await.unwrap(), 2, "3 and 6");
        assert_eq!(w.stored(project).await, [7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_projects_snapshots_go_with_it_once_their_urls_expired() {
        let w = world().await;
        let (gone, other) = (w.project().await, w.project().await);
        w.edit_and_build(gone).await;
        let (manifest, _) = crate::snapshot::build_or_reuse(&w.platform, gone).await.unwrap();
        signed_zip_url(&w.platform, &manifest, 120).await.unwrap();
        w.db.execute("DELETE FROM public.projects WHERE id = $1", &[&gone]).await.unwrap();

        assert_eq!(w.edit_and_build(other).await, 1);
        assert_eq!(w.stored(gone).await, [1], "its URL still works");
        advance(121).await;
        assert_eq!(w.edit_and_build(other).await, 2);
        assert_eq!(w.stored(gone).await, Vec::<i64>::new(), "pruned by another project's build");
        assert_eq!(w.stored(other).await, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_sweep_removes_at_most_a_batch() {
        let w = world().await;
        let projects: Vec<Uuid> = futures_util::future::join_all((0..PRUNE_BATCH + 2).map(|_| w.project())).await;
        for project in &projects {
            w.edit_and_build(*project).await;
        }
        for project in &projects {
            w.db.execute("DELETE FROM public.projects WHERE id = $1", &[project]).await.unwrap();
        }
        advance(1).await;
        assert_eq!(prune(&w.platform).await.unwrap(), PRUNE_BATCH);
        assert_eq!(prune(&w.platform).await.unwrap(), 2);
        assert_eq!(prune(&w.platform).await.unwrap(), 0);
    }
}

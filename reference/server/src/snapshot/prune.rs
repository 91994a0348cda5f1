//! Signing snapshot URLs, and pruning the snapshots nothing can download any more (issue 13).
//!
//! A snapshot is recorded (`fsync.project_snapshots`) when the first URL is signed for it, as
//! [`crate::snapshot::build_and_sign`] does right after building it, and superseded when a later
//! snapshot of its project is recorded (or its project is deleted). Every URL the server signs
//! for it is first noted in its record, which keeps the latest expiry; the URL is then
//! signed with exactly that expiry, and only once the note reached a record that is not being
//! removed and the zip was then still there.
//!
//! A sweep claims a snapshot (from then on nothing signs it) once:
//! - every URL signed for it expired more than [`CLOCK_SKEW_MARGIN`] ago (instances' clocks may
//!   differ a little), and
//! - it was superseded at least [`SUPERSEDED_KEPT_FOR`] ago: a build picks a stored snapshot only
//!   at the `seq` its read saw, so once a later one exists only a build whose read began before
//!   that can pick it; should one sign that late, its note finds the claim and the build builds
//!   again ([`crate::snapshot::build_and_sign`]).
//!
//! It then removes the snapshot's manifest (so it is never reused), its zip, and its record; a
//! removal cut short stays claimed and a later sweep finishes it. The newest snapshot of a live
//! project is never superseded: sessions started while nothing changes reuse it. Each new build
//! sweeps up to [`PRUNE_BATCH`] snapshots of any project.

use crate::platform::Platform;
use fsync_protocol::snapshot::{
    parse_snapshot_object_name, snapshot_manifest_name, snapshot_zip_name, Manifest, SNAPSHOT_BUCKET,
};
use fsync_store::error::ApiError;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use std::time::Duration;
use uuid::Uuid;

/// How long a superseded snapshot stays (when no URL signed for it lives longer).
pub const SUPERSEDED_KEPT_FOR: Duration = Duration::from_secs(fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S);
/// How long past its last URL's expiry a snapshot stays, for instances whose clocks differ.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(60);
/// Most snapshots one sweep removes.
pub const PRUNE_BATCH: usize = 16;

/// A signed download URL of `manifest`'s zip for `ttl_s` seconds, the snapshot kept at least as
/// long; `None` when the snapshot is being removed (or already is).
pub async fn signed_zip_url(platform: &Platform, manifest: &Manifest, ttl_s: u64) -> Result<Option<String>, ApiError> {
    let (project, id) = (manifest.project_id, &manifest.snapshot_id);
    let name = snapshot_zip_name(project, id);
    let issued_at_s = platform.sources.wall_s();
    if !note_signed(platform, project, id, manifest.seq, issued_at_s, ttl_s).await? {
        return Ok(None);
    }
    Ok(Some(platform.signed_url(SNAPSHOT_BUCKET, &name, issued_at_s, ttl_s)))
}

/// Notes a URL signed through Storage at `issued_at_s` for `ttl_s` seconds for an object of the
/// snapshot bucket, if its name is a snapshot's; `false` when that snapshot is being removed.
pub async fn note_signed_object(
    platform: &Platform,
    name: &str,
    issued_at_s: u64,
    ttl_s: u64,
) -> Result<bool, ApiError> {
    match parse_snapshot_object_name(name) {
        Some((project, id, seq)) => note_signed(platform, project, &id, seq, issued_at_s, ttl_s).await,
        None => Ok(true),
    }
}

/// Notes the URL, then checks the zip is still there: a sweep that claimed the snapshot before
/// the note makes it fail, and one after it finds the URL's expiry and leaves the snapshot.
async fn note_signed(
    platform: &Platform,
    project: Uuid,
    snapshot_id: &str,
    seq: i64,
    at_s: u64,
    ttl_s: u64,
) -> Result<bool, ApiError> {
    let signed = SnapshotSigned { project, snapshot_id: snapshot_id.to_owned(), seq, at_s, until_s: at_s + ttl_s };
    if !platform.data.note_snapshot_signed(&signed).await? {
        return Ok(false);
    }
    let zip = snapshot_zip_name(project, snapshot_id);
    platform.storage.exists(SNAPSHOT_BUCKET, &zip).await.map_err(ApiError::internal)
}

/// Removes up to [`PRUNE_BATCH`] snapshots that nothing can download any more; how many. One
/// that cannot be removed now is logged and left claimed for a later sweep.
pub async fn prune(platform: &Platform) -> Result<usize, ApiError> {
    let now_s = platform.sources.wall_s();
    let query = PruneQuery {
        expired_before_s: now_s.saturating_sub(CLOCK_SKEW_MARGIN.as_secs()),
        superseded_before_s: now_s.saturating_sub(SUPERSEDED_KEPT_FOR.as_secs()),
        limit: PRUNE_BATCH,
    };
    let mut removed = 0;
    for key in platform.data.claim_prunable_snapshots(query).await? {
        match remove(platform, &key).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(error = %e, project = %key.project, snapshot = key.snapshot_id,
                "could not remove a superseded snapshot; a later sweep tries again"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "pruned superseded snapshots");
    }
    Ok(removed)
}

/// Removes one claimed snapshot: its manifest first (without it the snapshot is never reused),
/// then its zip, then its record.
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

        /// Writes a file (the project's seq goes up by one) and builds its snapshot, signed for
        /// a second, which sweeps; the new snapshot's seq.
        async fn edit_and_build(&self, project: Uuid) -> i64 {
            let Value::Object(args) = json!({"project_uuid": project, "p_file_path": "a.ts",
                "p_content": format!("edit {}", self.edits.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                "p_file_type": "typescript"})
            else {
                unreachable!()
            };
            let call = RpcCall { function: "upsert_project_file".into(), args, read_only: false };
            self.pg.rpc(&RequestAuth::service(self.platform.sources.wall_s()), call).await.unwrap();
            let (manifest, reused, _) = crate::snapshot::build_and_sign(&self.platform, project, 1).await.unwrap();
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

    fn key(project: Uuid, seq: i64) -> SnapshotKey {
        SnapshotKey { project, snapshot_id: fsync_protocol::snapshot::snapshot_id(seq) }
    }

    /// Past the expiry of URLs signed now for `ttl_s`, with the margin for clocks.
    fn past(ttl_s: u64) -> u64 {
        ttl_s + CLOCK_SKEW_MARGIN.as_secs() + 1
    }

    #[tokio::test(start_paused = true)]
    async fn a_superseded_snapshot_goes_once_its_urls_expired_and_it_was_superseded_long_enough() {
        let w = world().await;
        let project = w.project().await;
        let kept = SUPERSEDED_KEPT_FOR.as_secs();
        assert_eq!(w.edit_and_build(project).await, 1);
        let (first, _, _) = crate::snapshot::build_and_sign(&w.platform, project, 60).await.unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(w.edit_and_build(project).await, 2);
        assert_eq!(w.stored(project).await, [1, 2], "both are new");

        advance(past(60)).await;
        assert_eq!(w.edit_and_build(project).await, 3);
        assert_eq!(w.stored(project).await, [1, 2, 3], "1's URL expired, but 2 superseded it just now");

        advance(kept).await;
        assert_eq!(w.edit_and_build(project).await, 4);
        assert_eq!(w.stored(project).await, [3, 4], "1 and 2 were superseded long enough ago");

        // A URL signed through Storage keeps its snapshot too.
        let name = snapshot_zip_name(project, "seq-3");
        assert!(note_signed_object(&w.platform, &name, w.platform.sources.wall_s(), 4 * kept).await.unwrap());
        advance(kept + 1).await;
        assert_eq!(w.edit_and_build(project).await, 5);
        assert_eq!(w.stored(project).await, [3, 4, 5], "4 was superseded just now");
        advance(kept + 1).await;
        assert_eq!(w.edit_and_build(project).await, 6);
        assert_eq!(w.stored(project).await, [3, 5, 6], "4 went; 3 is still signed");
        advance(kept + 1).await;
        assert_eq!(w.edit_and_build(project).await, 7);
        assert_eq!(w.stored(project).await, [3, 6, 7], "3's URL lives yet");

        // Nothing changes: the newest is reused, however old.
        advance(10 * kept).await;
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
        crate::snapshot::build_and_sign(&w.platform, gone, 120).await.unwrap();
        w.db.execute("DELETE FROM public.projects WHERE id = $1", &[&gone]).await.unwrap();

        assert_eq!(w.edit_and_build(other).await, 1);
        assert_eq!(w.stored(gone).await, [1], "its URL still works");
        advance(past(120)).await;
        assert_eq!(w.edit_and_build(other).await, 2);
        assert_eq!(w.stored(gone).await, Vec::<i64>::new(), "pruned by another project's build");
        assert_eq!(w.stored(other).await, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_claimed_snapshot_is_never_signed_and_a_removal_cut_short_is_finished() {
        let w = world().await;
        let project = w.project().await;
        w.edit_and_build(project).await;
        let (first, _) = crate::snapshot::build_or_reuse(&w.platform, project).await.unwrap();
        w.edit_and_build(project).await;
        advance(past(SUPERSEDED_KEPT_FOR.as_secs())).await;

        // A sweep claims 1, and stops after removing its manifest.
        let now_s = w.platform.sources.wall_s();
        let query = PruneQuery {
            expired_before_s: now_s - CLOCK_SKEW_MARGIN.as_secs(),
            superseded_before_s: now_s - SUPERSEDED_KEPT_FOR.as_secs(),
            limit: PRUNE_BATCH,
        };
        assert_eq!(w.platform.data.claim_prunable_snapshots(query).await.unwrap(), [key(project, 1)]);
        let manifest = snapshot_manifest_name(project, "seq-1");
        w.platform.storage.delete(SNAPSHOT_BUCKET, &manifest).await.unwrap();
        // No URL for it now: not for the function or the orchestrator, not through Storage.
        assert_eq!(signed_zip_url(&w.platform, &first, 60).await.unwrap(), None);
        let zip = snapshot_zip_name(project, "seq-1");
        assert!(!note_signed_object(&w.platform, &zip, now_s, 60).await.unwrap());
        // The next sweep finishes it.
        assert_eq!(prune(&w.platform).await.unwrap(), 1);
        assert_eq!(w.stored(project).await, [2]);

        // Were a snapshot claimed however it is read, no URL is ever handed out for it.
        let claim = "UPDATE fsync.project_snapshots SET removing = true WHERE project_id = $1";
        w.db.execute(claim, &[&project]).await.unwrap();
        let refused = crate::snapshot::build_and_sign(&w.platform, project, 60).await.unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.body.code.as_str()), (503, "PT503"), "{refused:?}");
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
        advance(past(1)).await;
        assert_eq!(prune(&w.platform).await.unwrap(), PRUNE_BATCH);
        assert_eq!(prune(&w.platform).await.unwrap(), 2);
        assert_eq!(prune(&w.platform).await.unwrap(), 0);
    }
}

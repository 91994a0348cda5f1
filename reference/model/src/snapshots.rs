//! Snapshot records on the model (`0009_snapshots.sql`): the same answers the table gives, so
//! simulated servers prune superseded snapshots as servers on a database do.

use crate::MemStore;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};
use uuid::Uuid;

/// One row of `fsync.project_snapshots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRow {
    pub seq: i64,
    pub built_at_s: u64,
    pub signed_until_s: u64,
}

impl MemStore {
    pub(crate) fn note_snapshot_signed_now(&self, signed: &SnapshotSigned) {
        let mut state = self.lock();
        let row = state.snapshots.entry((signed.project, signed.snapshot_id.clone())).or_insert(SnapshotRow {
            seq: signed.seq,
            built_at_s: signed.at_s,
            signed_until_s: signed.until_s,
        });
        row.signed_until_s = row.signed_until_s.max(signed.until_s);
    }

    pub(crate) fn prunable_snapshots_now(&self, query: PruneQuery) -> Vec<SnapshotKey> {
        let state = self.lock();
        let superseded = |project: &Uuid, row: &SnapshotRow| {
            !state.projects.contains_key(project)
                || state.snapshots.iter().any(|((p, _), later)| {
                    p == project && later.seq > row.seq && later.built_at_s <= query.superseded_before_s
                })
        };
        let mut prunable: Vec<(i64, SnapshotKey)> = state
            .snapshots
            .iter()
            .filter(|((project, _), row)| row.signed_until_s < query.now_s && superseded(project, row))
            .map(|((project, id), row)| (row.seq, SnapshotKey { project: *project, snapshot_id: id.clone() }))
            .collect();
        prunable.sort();
        prunable.into_iter().take(query.limit).map(|(_, key)| key).collect()
    }

    pub(crate) fn forget_snapshot_now(&self, key: &SnapshotKey) {
        self.lock().snapshots.remove(&(key.project, key.snapshot_id.clone()));
    }
}

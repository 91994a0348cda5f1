//! Snapshot records on the model (`0009_snapshots.sql`): the same answers the table gives, so
//! simulated servers prune superseded snapshots as servers on a database do.

use crate::MemStore;
use fsync_store::snapshots::{PruneQuery, SnapshotKey, SnapshotSigned};

/// One row of `fsync.project_snapshots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRow {
    pub seq: i64,
    pub built_at_s: u64,
    pub signed_until_s: u64,
    /// When a later snapshot of the project was recorded (0: the project is gone).
    pub superseded_at_s: Option<u64>,
    pub removing: bool,
}

impl MemStore {
    pub(crate) fn note_snapshot_signed_now(&self, signed: &SnapshotSigned) -> bool {
        let mut state = self.lock();
        let key = (signed.project, signed.snapshot_id.clone());
        if let Some(row) = state.snapshots.get_mut(&key) {
            if row.removing {
                return false;
            }
            row.signed_until_s = row.signed_until_s.max(signed.until_s);
            return true;
        }
        let later = state.snapshots.iter().any(|((p, _), row)| *p == signed.project && row.seq > signed.seq);
        let superseded_at_s = match (state.projects.contains_key(&signed.project), later) {
            (false, _) => Some(0),
            (true, true) => Some(signed.at_s),
            (true, false) => None,
        };
        for ((_, _), row) in state.snapshots.iter_mut().filter(|((p, _), r)| *p == signed.project && r.seq < signed.seq)
        {
            row.superseded_at_s = row.superseded_at_s.or(Some(signed.at_s));
        }
        let row = SnapshotRow {
            seq: signed.seq,
            built_at_s: signed.at_s,
            signed_until_s: signed.until_s,
            superseded_at_s,
            removing: false,
        };
        state.snapshots.insert(key, row);
        true
    }

    pub(crate) fn claim_prunable_snapshots_now(&self, query: PruneQuery) -> Vec<SnapshotKey> {
        let mut state = self.lock();
        let mut chosen: Vec<_> = state
            .snapshots
            .iter()
            .filter_map(|((project, id), row)| {
                let superseded = row.superseded_at_s.is_some_and(|at| at <= query.superseded_before_s);
                (superseded && row.signed_until_s < query.expired_before_s)
                    .then(|| ((row.removing, row.superseded_at_s, *project, row.seq), id.clone()))
            })
            .collect();
        chosen.sort();
        let mut keys: Vec<SnapshotKey> = chosen
            .into_iter()
            .take(query.limit)
            .map(|((_, _, project, _), snapshot_id)| SnapshotKey { project, snapshot_id })
            .collect();
        for key in &keys {
            if let Some(row) = state.snapshots.get_mut(&(key.project, key.snapshot_id.clone())) {
                row.removing = true;
            }
        }
        keys.sort();
        keys
    }

    pub(crate) fn forget_snapshot_now(&self, key: &SnapshotKey) {
        self.lock().snapshots.remove(&(key.project, key.snapshot_id.clone()));
    }
}

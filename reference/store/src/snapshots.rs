//! Snapshot records (issue 13, pruning superseded snapshots): when each stored snapshot was
//! first built or signed, until when a URL signed for it works, since when it is superseded, and
//! whether it is being removed. A superseded snapshot is removed once nothing can still download
//! it: every URL signed for it has expired, and it was superseded long enough ago that no build
//! which chose it before is still signing it.

use uuid::Uuid;

/// A URL for a snapshot is being signed (its record is made on the first one; a record made
/// while a later snapshot of the project is recorded, or its project is gone, is superseded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSigned {
    pub project: Uuid,
    pub snapshot_id: String,
    /// The `seq` the snapshot reflects.
    pub seq: i64,
    /// When, in wall seconds: the record's `built_at_s` when it is the first.
    pub at_s: u64,
    /// When the signed URL expires, in wall seconds.
    pub until_s: u64,
}

/// A stored snapshot, by project and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotKey {
    pub project: Uuid,
    pub snapshot_id: String,
}

/// Which snapshots to claim for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneQuery {
    /// Every URL signed for a claimed snapshot expired before this (wall seconds).
    pub expired_before_s: u64,
    /// A claimed snapshot was superseded at or before this: a later snapshot of its project was
    /// recorded then (a deleted project's snapshots are superseded since 0).
    pub superseded_before_s: u64,
    /// At most this many; snapshots already being removed (a removal cut short) come last.
    pub limit: usize,
}

//! Snapshot records (issue 13, pruning superseded snapshots): when each stored snapshot was
//! first built or signed, and until when a URL signed for it works. A superseded snapshot is
//! removed once nothing can still download it: every URL signed for it has expired, and its
//! successor was built long enough ago that no build that chose it is still signing.

use uuid::Uuid;

/// A URL for a snapshot was signed (its record is made on the first one).
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

/// Which snapshots may be removed at `now_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneQuery {
    /// Now, in wall seconds: every URL signed for a removed snapshot expired before it.
    pub now_s: u64,
    /// A snapshot is superseded once a later one (higher `seq`) of its project was built at or
    /// before this; a deleted project's snapshots are all superseded.
    pub superseded_before_s: u64,
    /// At most this many.
    pub limit: usize,
}

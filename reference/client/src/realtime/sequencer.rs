//! The consumer's decisions of DESIGN §5.3, with no I/O: which event to apply, which to ignore,
//! and when to catch up through `list_changes_since`. [`super::ProjectFeed`] drives it from its
//! socket loop; the simulator and the property tests drive it directly.
//!
//! - Before the base seq is known (the snapshot's), events are not kept: the catch-up that setting
//!   the base triggers reads after they committed.
//! - `seq <= last_seq`: already applied (a duplicate or a late event); ignored.
//! - `seq == last_seq + 1` with its content: applied as it came.
//! - A gap, a `bulk:apply`, or content left out of an event: catch up from `last_seq`.
//! - After every (re)join, and when the base is set while joined: catch up from `last_seq`.
//! - When no event came for a while (`FeedConfig::idle_catch_up`): catch up from `last_seq` too. A broadcast can be
//!   lost without a word (Supabase's `realtime.send` swallows its errors); a gap shows it only
//!   when a later event comes, and the last one of a burst has none after it.
//! - A catch-up's answer brings the consumer to its `seq` when that is ahead; an answer read
//!   before changes already applied (behind `last_seq`) changes nothing.
//!
//! **Invariant:** `last_seq` never goes backwards, and every batch handed out starts right after
//! the previous one.

use fsync_protocol::api::Changes;
use fsync_protocol::events::{FileChange, ProjectEvent};
use fsync_store::Plant;

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Nothing,
    /// Hand these changes to the consumer as one unit; afterwards it is at `seq`.
    Apply { seq: i64, changes: Vec<FileChange> },
    /// Call `list_changes_since(since)` and give the answer to [`Sequencer::caught_up`].
    CatchUp { since: i64 },
}

/// What a catch-up's answer amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtUp {
    /// The batch to hand to the consumer, when the answer was ahead of `last_seq`.
    pub apply: Option<(i64, Vec<FileChange>)>,
    /// The seq the consumer holds every change up to, now.
    pub reached: i64,
}

/// A consumer's position in a project's change sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequencer {
    last_seq: Option<i64>,
    /// A bug planted by the simulator (`skip-gap-check`, `apply-stale`); never set otherwise.
    plant: Option<Plant>,
}

impl Sequencer {
    /// A consumer at `base` (the snapshot's seq), or one waiting for its base (`None`).
    pub fn new(base: Option<i64>) -> Sequencer {
        Sequencer { last_seq: base, plant: None }
    }

    /// The same sequencer with a planted bug (the simulator's `--plant`).
    pub fn planted(mut self, plant: Option<Plant>) -> Sequencer {
        self.plant = plant;
        self
    }

    /// The seq of the last change handed out (or the base).
    pub fn last_seq(&self) -> Option<i64> {
        self.last_seq
    }

    /// The consumer's state now reflects `seq`. Only the first base counts: a later one could
    /// move `last_seq` backwards. Returns whether it was taken.
    pub fn set_base(&mut self, seq: i64) -> bool {
        if self.last_seq.is_some() {
            return false;
        }
        self.last_seq = Some(seq);
        true
    }

    /// The channel is (re)joined: events flow from here, and whatever was committed while no
    /// one listened comes from a catch-up.
    pub fn joined(&self) -> Step {
        match self.last_seq {
            Some(since) => Step::CatchUp { since },
            None => Step::Nothing,
        }
    }

    /// No event came for a while: check for changes whose broadcasts were lost.
    pub fn idle(&self) -> Step {
        self.joined()
    }

    /// One project event, as it arrived.
    pub fn event(&mut self, event: ProjectEvent) -> Step {
        let Some(last) = self.last_seq else { return Step::Nothing };
        let seq = event.seq();
        let stale = seq <= last;
        if stale && self.plant != Some(Plant::ApplyStale) {
            return Step::Nothing;
        }
        if seq > last + 1 && self.plant != Some(Plant::SkipGapCheck) {
            return Step::CatchUp { since: last };
        }
        let change = match event {
            // Content is absent exactly when it was too large to send (`content_omitted`).
            ProjectEvent::Update(update) if update.content.is_some() => FileChange::Write {
                path: update.file_path,
                file_type: update.file_type,
                content: update.content,
                content_hash: Some(update.content_hash),
                version: update.version,
            },
            ProjectEvent::Delete(delete) => FileChange::Delete { path: delete.file_path, version: delete.version },
            // Content left out of the event, or a bulk: fetch what changed.
            ProjectEvent::Update(_) | ProjectEvent::Bulk(_) => return Step::CatchUp { since: last },
        };
        if stale {
            // Planted: a stale change applied over newer files; last_seq stays.
            return Step::Apply { seq: last, changes: vec![change] };
        }
        self.advance(seq);
        Step::Apply { seq, changes: vec![change] }
    }

    /// The answer of `list_changes_since(since)` that a [`Step::CatchUp`] asked for.
    pub fn caught_up(&mut self, answer: Changes) -> CaughtUp {
        let last = self.last_seq.unwrap_or(0);
        if answer.seq <= last {
            return CaughtUp { apply: None, reached: last };
        }
        // Only rows after `last` are new to the consumer: an answer for an older `since` (a
        // catch-up that raced with live events) still carries rows it already applied.
        let changes = answer.changes.into_iter().filter(|c| c.seq > last).map(FileChange::from_change).collect();
        self.advance(answer.seq);
        CaughtUp { apply: Some((answer.seq, changes)), reached: answer.seq }
    }

    fn advance(&mut self, seq: i64) {
        // Architecture invariant: a consumer's last_seq never goes backwards.
        assert!(self.last_seq.is_none_or(|last| seq >= last), "last_seq went backwards: {:?} -> {seq}", self.last_seq);
        self.last_seq = Some(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsync_protocol::api::Change;
    use fsync_protocol::events::{BulkApply, FileDelete, FileUpdate};

    fn update(seq: i64, content: Option<&str>) -> ProjectEvent {
        ProjectEvent::Update(FileUpdate {
            file_path: "a".into(),
            file_type: "text".into(),
            content: content.map(str::to_owned),
            content_omitted: content.is_none(),
            content_hash: "h".into(),
            version: seq as i32,
            seq,
            timestamp: String::new(),
        })
    }

    fn change(seq: i64) -> Change {
        Change {
            file_path: format!("f{seq}"),
            file_type: "text".into(),
            content: Some("x".into()),
            content_hash: Some("h".into()),
            version: 1,
            deleted: false,
            seq,
        }
    }

    #[test]
    fn waits_for_its_base_then_applies_in_order_and_ignores_repeats() {
        let mut s = Sequencer::new(None);
        assert_eq!(s.joined(), Step::Nothing);
        assert_eq!(s.event(update(1, Some("x"))), Step::Nothing, "before the base nothing is kept");
        assert!(s.set_base(3));
        assert!(!s.set_base(1), "a second base is refused");
        assert_eq!(s.joined(), Step::CatchUp { since: 3 });
        assert_eq!(s.event(update(3, Some("x"))), Step::Nothing);
        assert!(matches!(s.event(update(4, Some("x"))), Step::Apply { seq: 4, .. }));
        assert_eq!(s.event(update(4, Some("x"))), Step::Nothing, "a duplicate");
        let delete =
            ProjectEvent::Delete(FileDelete { file_path: "a".into(), version: 2, seq: 5, timestamp: "".into() });
        assert_eq!(
            s.event(delete),
            Step::Apply { seq: 5, changes: vec![FileChange::Delete { path: "a".into(), version: 2 }] }
        );
        assert_eq!(s.last_seq(), Some(5));
    }

    #[test]
    fn catches_up_on_a_gap_a_bulk_and_omitted_content() {
        let mut s = Sequencer::new(Some(0));
        assert_eq!(s.event(update(2, Some("x"))), Step::CatchUp { since: 0 });
        assert_eq!(s.event(update(1, None)), Step::CatchUp { since: 0 });
        let bulk = ProjectEvent::Bulk(BulkApply { seq: 1, files: vec![], files_omitted: true, timestamp: "".into() });
        assert_eq!(s.event(bulk), Step::CatchUp { since: 0 });
        assert_eq!(s.last_seq(), Some(0), "nothing moves until the catch-up answers");
    }

    #[test]
    fn a_quiet_feed_checks_from_last_seq() {
        assert_eq!(Sequencer::new(None).idle(), Step::Nothing);
        assert_eq!(Sequencer::new(Some(4)).idle(), Step::CatchUp { since: 4 });
    }

    #[test]
    fn planted_bugs_undo_the_checks_they_name() {
        let mut skip = Sequencer::new(Some(0)).planted(Some(Plant::SkipGapCheck));
        assert!(matches!(skip.event(update(3, Some("x"))), Step::Apply { seq: 3, .. }), "across the gap");
        let mut stale = Sequencer::new(Some(5)).planted(Some(Plant::ApplyStale));
        assert!(matches!(stale.event(update(2, Some("old"))), Step::Apply { seq: 5, .. }), "stale, applied");
        assert_eq!(stale.last_seq(), Some(5), "last_seq stays");
        let mut honest = Sequencer::new(Some(5)).planted(Some(Plant::SkipBaseCatchUp));
        assert_eq!(honest.event(update(2, Some("old"))), Step::Nothing, "other plants leave the sequencer alone");
    }

    #[test]
    fn a_catch_up_moves_forward_only_and_hands_out_only_new_rows() {
        let mut s = Sequencer::new(Some(2));
        let ahead = s.caught_up(Changes { seq: 4, changes: vec![change(1), change(3), change(4)] });
        assert_eq!(ahead.reached, 4);
        let (seq, changes) = ahead.apply.unwrap();
        assert_eq!((seq, changes.iter().map(FileChange::path).collect::<Vec<_>>()), (4, vec!["f3", "f4"]));
        let behind = s.caught_up(Changes { seq: 3, changes: vec![change(3)] });
        assert_eq!(behind, CaughtUp { apply: None, reached: 4 });
        assert_eq!(s.last_seq(), Some(4));
    }
}

//! The sequencer against DESIGN §5.3, with no network: a project's history of updates, deletes
//! and bulks (some events with their content left out), delivered in random order with drops,
//! duplicates, late events and rejoins, and catch-ups answered by the true
//! `list_changes_since` at some point between the request and now.
//!
//! After every step: `last_seq` never went back, every live batch is `last_seq + 1`, and the
//! consumer's files equal the project's files at its `last_seq`. At the end, after a rejoin, it
//! is at the head with the head's files.

use fsync_client::realtime::{Sequencer, Step};
use fsync_protocol::api::{Change, Changes};
use fsync_protocol::events::{BulkApply, BulkFile, FileChange, FileDelete, FileUpdate, ProjectEvent};
use proptest::prelude::*;
use std::collections::BTreeMap;

const PATHS: &[&str] = &["a.ts", "b.ts", "src/c.tsx", "src/d/e.md"];

/// One commit of the history.
#[derive(Debug, Clone)]
enum Write {
    Update { path: usize, content: u8, omitted: bool },
    Delete { path: usize },
    Bulk(Vec<(usize, Option<u8>)>),
}

/// What happens next to the consumer.
#[derive(Debug, Clone)]
enum Action {
    /// The next write commits (its event may or may not be delivered later).
    Commit,
    /// The event of the `n`-th committed write (modulo the committed count) arrives.
    Deliver(usize),
    /// The connection drops and the channel is joined again.
    Rejoin,
    /// The consumer hydrates from the snapshot at the `n`-th committed seq (modulo) and sets it
    /// as its base (only the first counts).
    Base(usize),
}

/// One row of a path's history: (version, seq, content or deleted).
type Row = (i32, i64, Option<String>);

/// The project: every path's head after each commit.
struct Project {
    heads: Vec<BTreeMap<String, Row>>,
    events: Vec<ProjectEvent>,
}

fn content(n: u8) -> String {
    format!("content {n}")
}

impl Project {
    fn new(writes: &[Write]) -> Project {
        let mut heads = vec![BTreeMap::new()];
        let mut events = Vec::new();
        for (i, write) in writes.iter().enumerate() {
            let seq = i as i64 + 1;
            let mut next: BTreeMap<String, Row> = heads.last().cloned().unwrap_or_default();
            let mut put = |path: usize, value: Option<String>| {
                let path = PATHS[path].to_owned();
                let version = next.get(&path).map_or(0, |r| r.0) + 1;
                next.insert(path.clone(), (version, seq, value));
                (path, version)
            };
            let event = match write {
                Write::Update { path, content: n, omitted } => {
                    let (file_path, version) = put(*path, Some(content(*n)));
                    ProjectEvent::Update(FileUpdate {
                        file_path,
                        file_type: "typescript".into(),
                        content: (!omitted).then(|| content(*n)),
                        content_omitted: *omitted,
                        content_hash: fsync_protocol::content_hash(&content(*n)),
                        version,
                        seq,
                        timestamp: String::new(),
                    })
                }
                Write::Delete { path } => {
                    let (file_path, version) = put(*path, None);
                    ProjectEvent::Delete(FileDelete { file_path, version, seq, timestamp: String::new() })
                }
                Write::Bulk(entries) => {
                    let mut files = BTreeMap::new();
                    for (path, value) in entries {
                        let (file_path, version) = put(*path, value.map(content));
                        files.insert(file_path, (version, value.is_none()));
                    }
                    let files = files
                        .into_iter()
                        .map(|(file_path, (version, deleted))| BulkFile {
                            file_path,
                            version,
                            content_hash: None,
                            deleted,
                        })
                        .collect();
                    ProjectEvent::Bulk(BulkApply { seq, files, files_omitted: false, timestamp: String::new() })
                }
            };
            heads.push(next);
            events.push(event);
        }
        Project { heads, events }
    }

    /// The live files at `seq`.
    fn files_at(&self, seq: i64) -> BTreeMap<String, String> {
        self.heads[seq as usize].iter().filter_map(|(p, (_, _, c))| c.clone().map(|c| (p.clone(), c))).collect()
    }

    /// `list_changes_since(since)` read when `at` writes had committed.
    fn changes_since(&self, since: i64, at: i64) -> Changes {
        let changes = self.heads[at as usize]
            .iter()
            .filter(|(_, (_, seq, _))| *seq > since)
            .map(|(path, (version, seq, value))| Change {
                file_path: path.clone(),
                file_type: "typescript".into(),
                content: value.clone(),
                content_hash: value.as_deref().map(fsync_protocol::content_hash),
                version: *version,
                deleted: value.is_none(),
                seq: *seq,
            })
            .collect();
        Changes { seq: at, changes }
    }
}

/// The consumer: its files, driven by a sequencer, checked after every step.
struct Consumer<'p> {
    project: &'p Project,
    sequencer: Sequencer,
    files: BTreeMap<String, String>,
    /// How far each catch-up's read lags behind "now" (drawn per case).
    lag: usize,
    catch_ups: usize,
    /// `last_seq` after the previous step (the sequencer counts a live batch as it hands it out).
    last_seen: Option<i64>,
}

impl Consumer<'_> {
    fn apply(&mut self, changes: Vec<FileChange>) {
        for change in changes {
            match change {
                FileChange::Write { path, content, .. } => {
                    self.files.insert(path, content.expect("catch-ups and live updates carry content"));
                }
                FileChange::Delete { path, .. } => {
                    self.files.remove(&path);
                }
            }
        }
    }

    /// Does what the sequencer asked, with `committed` writes committed now.
    fn run(&mut self, step: Step, committed: i64) -> Result<(), TestCaseError> {
        let before = self.last_seen;
        match step {
            Step::Nothing => {}
            Step::Apply { seq, changes } => {
                prop_assert_eq!(Some(seq - 1), before, "a live batch must follow the last one");
                self.apply(changes);
            }
            Step::CatchUp { since } => {
                prop_assert_eq!(Some(since), before, "a catch-up starts at last_seq");
                prop_assert_eq!(Some(since), self.sequencer.last_seq(), "nothing moves before the answer");
                self.catch_ups += 1;
                // The read happened somewhere between the request and now.
                let at = (committed - self.lag as i64).max(since);
                let caught = self.sequencer.caught_up(self.project.changes_since(since, at));
                prop_assert_eq!(caught.reached, at.max(since));
                if let Some((_, changes)) = caught.apply {
                    self.apply(changes);
                }
            }
        }
        let after = self.sequencer.last_seq();
        prop_assert!(after >= before, "last_seq went back: {:?} -> {:?}", before, after);
        self.last_seen = after;
        if let Some(at) = after {
            prop_assert_eq!(&self.files, &self.project.files_at(at), "files differ from the project at seq {}", at);
        }
        Ok(())
    }
}

fn write() -> impl Strategy<Value = Write> {
    let path = 0..PATHS.len();
    prop_oneof![
        4 => (path.clone(), any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(path, content, omitted)| Write::Update { path, content, omitted }),
        1 => path.clone().prop_map(|path| Write::Delete { path }),
        1 => prop::collection::vec((path, prop::option::weighted(0.8, any::<u8>())), 1..4).prop_map(Write::Bulk),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Just(Action::Commit),
        5 => any::<usize>().prop_map(Action::Deliver),
        1 => Just(Action::Rejoin),
        1 => any::<usize>().prop_map(Action::Base),
    ]
}

fn cases(base: u32) -> u32 {
    let scale: u32 = std::env::var("FSYNC_PROPTEST_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    base.saturating_mul(scale.max(1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn converges_through_drops_duplicates_reorders_and_rejoins(
        writes in prop::collection::vec(write(), 1..25),
        actions in prop::collection::vec(action(), 1..80),
        lag in 0usize..3,
    ) {
        let project = Project::new(&writes);
        let mut consumer =
            Consumer { project: &project, sequencer: Sequencer::new(None), files: BTreeMap::new(), lag, catch_ups: 0, last_seen: None };
        let mut committed = 0i64;
        for action in actions {
            let step = match action {
                Action::Commit => {
                    committed = (committed + 1).min(writes.len() as i64);
                    Step::Nothing
                }
                Action::Deliver(_) if committed == 0 => Step::Nothing,
                Action::Deliver(n) => consumer.sequencer.event(project.events[n % committed as usize].clone()),
                Action::Rejoin => consumer.sequencer.joined(),
                Action::Base(n) => {
                    let seq = (n % (committed as usize + 1)) as i64;
                    if consumer.sequencer.last_seq().is_none() {
                        consumer.files = project.files_at(seq);
                    }
                    if consumer.sequencer.set_base(seq) {
                        consumer.last_seen = Some(seq);
                        consumer.sequencer.joined()
                    } else {
                        Step::Nothing
                    }
                }
            };
            consumer.run(step, committed)?;
        }
        // Faults stop: everything commits, the consumer has a base, rejoins and catches up.
        let head = writes.len() as i64;
        if consumer.sequencer.last_seq().is_none() {
            consumer.files = project.files_at(0);
            consumer.sequencer.set_base(0);
            consumer.last_seen = Some(0);
        }
        consumer.lag = 0;
        let rejoin = consumer.sequencer.joined();
        consumer.run(rejoin, head)?;
        prop_assert_eq!(consumer.sequencer.last_seq(), Some(head));
        prop_assert_eq!(&consumer.files, &project.files_at(head));
    }
}

/// Every update delivered once, in order, from base 0: each applies live, none needs a catch-up.
#[test]
fn in_order_delivery_applies_live() {
    let writes: Vec<Write> =
        (0..10).map(|i| Write::Update { path: i % PATHS.len(), content: i as u8, omitted: false }).collect();
    let project = Project::new(&writes);
    let mut consumer = Consumer {
        project: &project,
        sequencer: Sequencer::new(Some(0)),
        files: BTreeMap::new(),
        lag: 0,
        catch_ups: 0,
        last_seen: Some(0),
    };
    for (i, event) in project.events.iter().enumerate() {
        let step = consumer.sequencer.event(event.clone());
        assert!(matches!(step, Step::Apply { .. }), "{step:?}");
        consumer.run(step, i as i64 + 1).unwrap();
    }
    assert_eq!(consumer.catch_ups, 0);
    assert_eq!(consumer.files, project.files_at(10));
}

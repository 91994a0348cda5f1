//! What editors were told, and the checks of DESIGN §10 on the database at the end of a run:
//! no acknowledged write is lost (2), versions are 1, 2, 3, … per path (3), compare-and-set
//! commits only on the version it expected, once (4), `seq` is gapless (5).

use crate::check::{project_rows as rows, Violation};
use fsync_model::state::{Row, State};
use fsync_model::MemStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A write an editor saw acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub editor: String,
    pub project: Uuid,
    pub seq: i64,
    /// Every path it wrote, with the content it gave (`None`: deleted).
    pub entries: Vec<(String, Option<String>)>,
    /// For a compare-and-set that wrote: the path, the version expected and the version answered.
    pub cas: Option<(String, i32, i32)>,
}

/// Every acknowledged write of a run.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Ack>>>);

impl Ledger {
    pub fn record(&self, ack: Ack) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Checks the database against the ledger, for every project.
pub fn check(store: &MemStore, ledger: &Ledger, projects: &[Uuid]) -> Vec<Violation> {
    let state = store.snapshot();
    let mut found = Vec::new();
    for &project in projects {
        found.extend(versions_gapless(&state, project));
        found.extend(seq_gapless(&state, project));
    }
    let acks = ledger.acks();
    for ack in &acks {
        found.extend(acknowledged_kept(&state, ack));
    }
    found.extend(compare_and_set(&acks));
    found
}

/// Invariant 3: per path, versions 1, 2, 3, … and their seqs in the same order.
fn versions_gapless(state: &State, project: Uuid) -> Vec<Violation> {
    let mut found = Vec::new();
    for (path, versions) in rows(state, project) {
        let numbers: Vec<i32> = versions.iter().map(|r| r.version).collect();
        let expected: Vec<i32> = (1..=versions.len() as i32).collect();
        let ordered = versions.windows(2).all(|w| w[0].seq < w[1].seq);
        if numbers != expected || !ordered {
            found.push(Violation {
                invariant: "3 versions are 1, 2, 3, … with one head",
                detail: format!("{path} has versions {numbers:?}"),
            });
        }
    }
    found
}

/// Invariant 5: the project's seqs are 1..=seq, each used by some row.
fn seq_gapless(state: &State, project: Uuid) -> Vec<Violation> {
    let Some(head) = state.projects.get(&project).map(|p| p.seq) else { return vec![] };
    let used: BTreeSet<i64> = rows(state, project).flat_map(|(_, r)| r.iter().map(|r| r.seq)).collect();
    let expected: BTreeSet<i64> = (1..=head).collect();
    if used == expected {
        return vec![];
    }
    let missing: Vec<&i64> = expected.difference(&used).take(5).collect();
    let extra: Vec<&i64> = used.difference(&expected).take(5).collect();
    vec![Violation {
        invariant: "5 seq is gapless and in commit order",
        detail: format!("project {project} at seq {head}: seqs missing {missing:?}, beyond the head {extra:?}"),
    }]
}

/// Invariant 2: at the acknowledged seq, every path holds what the write gave.
fn acknowledged_kept(state: &State, ack: &Ack) -> Vec<Violation> {
    let paths: BTreeMap<&String, &Vec<Row>> = rows(state, ack.project).collect();
    let mut found = Vec::new();
    for (path, content) in &ack.entries {
        let at = paths.get(path).and_then(|rows| rows.iter().rev().find(|r| r.seq <= ack.seq));
        let held = at.filter(|r| !r.deleted).map(|r| r.content.clone().unwrap_or_default());
        if held != *content {
            found.push(Violation {
                invariant: "2 no acknowledged write is lost",
                detail: format!(
                    "{} was told {path} is {:?} at seq {}, the database has {:?}",
                    ack.editor,
                    content.as_ref().map(|_| "written").unwrap_or("deleted"),
                    ack.seq,
                    held.map(|_| "other content")
                ),
            });
        }
    }
    found
}

/// Invariant 4: a compare-and-set on version n that wrote answers n + 1, and of those expecting
/// the same n at most one does.
fn compare_and_set(acks: &[Ack]) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut winners: BTreeMap<(Uuid, &String, i32), &String> = BTreeMap::new();
    for ack in acks {
        let Some((path, expected, version)) = &ack.cas else { continue };
        if *version != expected + 1 {
            found.push(Violation {
                invariant: "4 compare-and-set commits only on the version it expected",
                detail: format!("{} expected {path} at v{expected} and was answered v{version}", ack.editor),
            });
        }
        if let Some(first) = winners.insert((ack.project, path, *expected), &ack.editor) {
            found.push(Violation {
                invariant: "4 compare-and-set commits only on the version it expected",
                detail: format!("{first} and {} both replaced {path} v{expected}", ack.editor),
            });
        }
    }
    found
}

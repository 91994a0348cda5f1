//! The checkers of DESIGN §10 on agents' directories, against the model as the oracle (it is
//! the database, and it outlives every server): the trees an agent may show (a per-`seq` digest
//! history) and convergence at quiescence, byte for byte. [`crate::ledger`] checks the database.

use crate::trace::Trace;
use fsync_model::state::{Row, State};
use fsync_model::MemStore;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// An invariant that did not hold, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// The violations a run found, from every host.
#[derive(Clone, Default)]
pub struct Found(Arc<Mutex<Vec<Violation>>>);

impl Found {
    /// Records a violation seen from `lane`, in the trace too.
    pub fn report(&self, trace: &Trace, lane: &str, invariant: &'static str, detail: String) {
        trace.violation(lane, format!("{invariant}: {detail}"));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(Violation { invariant, detail });
    }

    pub fn all(&self) -> Vec<Violation> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The project's live files as the source of truth holds them: path → bytes.
pub fn live_files(store: &MemStore, project: Uuid) -> BTreeMap<String, Vec<u8>> {
    store.inspect(|state| {
        project_rows(state, project)
            .filter_map(|(path, rows)| {
                let head = rows.last().filter(|h| !h.deleted)?;
                Some((path.clone(), head.content.clone().unwrap_or_default().into_bytes()))
            })
            .collect()
    })
}

/// Every path of `project` with its version rows, in path order.
pub fn project_rows(state: &State, project: Uuid) -> impl Iterator<Item = (&String, &Vec<Row>)> {
    state.files.range((project, String::new())..).take_while(move |((p, _), _)| *p == project).map(|((_, f), r)| (f, r))
}

/// Every regular file under `root`, by relative path (what an agent's directory holds); empty
/// when it cannot be read.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fsync_agent::apply::read_tree(root).unwrap_or_default()
}

/// How two trees differ, shortly: the paths missing, extra, or with other bytes.
pub fn difference(actual: &BTreeMap<String, Vec<u8>>, expected: &BTreeMap<String, Vec<u8>>) -> String {
    let missing: Vec<&String> = expected.keys().filter(|p| !actual.contains_key(*p)).collect();
    let extra: Vec<&String> = actual.keys().filter(|p| !expected.contains_key(*p)).collect();
    let stale: Vec<&String> =
        expected.iter().filter(|(p, b)| actual.get(*p).is_some_and(|a| a != *b)).map(|(p, _)| p).collect();
    format!("missing {missing:?}, extra {extra:?}, other bytes {stale:?}")
}

/// The project's tree after every seq, as digests: what an agent's directory may look like.
#[derive(Default)]
pub struct History {
    /// `digests[s]` is the digest of the live files after seq `s`.
    digests: Vec<String>,
}

impl History {
    /// Brings the digests up to the project's current seq.
    pub fn update(&mut self, store: &MemStore, project: Uuid) {
        store.inspect(|state| self.update_from(state, project));
    }

    fn update_from(&mut self, state: &State, project: Uuid) {
        let Some(head) = state.projects.get(&project).map(|p| p.seq) else { return };
        if self.digests.len() as i64 > head {
            return;
        }
        let rows: Vec<(&String, &Vec<Row>)> = project_rows(state, project).collect();
        for seq in self.digests.len() as i64..=head {
            let mut hasher = sha2::Sha256::new();
            for (path, versions) in &rows {
                let at = versions.iter().rev().find(|r| r.seq <= seq);
                if let Some(row) = at.filter(|r| !r.deleted) {
                    hasher.update(path.as_bytes());
                    hasher.update([0]);
                    hasher.update(row.content.as_deref().unwrap_or("").as_bytes());
                    hasher.update([0]);
                }
            }
            self.digests.push(fsync_protocol::hash::to_hex(&hasher.finalize()));
        }
    }

    /// The seqs, from `from` on, whose tree is `digest`: where an agent at least at `from` may be.
    pub fn first_match(&self, digest: &str, from: i64) -> Option<i64> {
        (from.max(0) as usize..self.digests.len()).find(|&s| self.digests[s] == digest).map(|s| s as i64)
    }

    /// Whether any seq before `before` has the tree `digest`.
    pub fn matches_before(&self, digest: &str, before: i64) -> bool {
        self.digests.iter().take(before.max(0) as usize).any(|d| d == digest)
    }
}

/// The digest of a directory's tree, in the form [`History`] keeps.
pub fn digest(tree: &BTreeMap<String, Vec<u8>>) -> String {
    let mut hasher = sha2::Sha256::new();
    for (path, bytes) in tree {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(bytes);
        hasher.update([0]);
    }
    fsync_protocol::hash::to_hex(&hasher.finalize())
}

//! The continuous checker: every 25 simulated ms (every 250 ms once nothing has changed for 2 s:
//! a tree that is wrong stays wrong until the agent's next change) it reads every agent's
//! directory, and each tree
//! must be its project's tree at some seq no earlier than the one it last showed (invariants 2,
//! 5, 6, 8: nothing that was never written, no going back, bulks whole, the snapshot plus every
//! later change). A per-seq digest history makes the check cheap. What an agent shows is noted in
//! the trace as a delivery from its server.

use crate::check::{self, History};
use crate::trace;
use crate::world::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// How often it looks while trees change, and once they have been still for [`QUIET_AFTER`].
const FAST: Duration = Duration::from_millis(25);
const SLOW: Duration = Duration::from_millis(250);
const QUIET_AFTER: Duration = Duration::from_secs(2);

pub async fn watcher(shared: Shared) -> turmoil::Result {
    let mut histories: BTreeMap<Uuid, History> = BTreeMap::new();
    let mut at: BTreeMap<PathBuf, i64> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    let (mut seen, mut last_change) = (BTreeMap::new(), Duration::ZERO);
    loop {
        let quiet = trace::now().saturating_sub(last_change) >= QUIET_AFTER;
        tokio::time::sleep(if quiet { SLOW } else { FAST }).await;
        for &project in &shared.projects {
            histories.entry(project).or_default().update(&shared.store, project);
        }
        for (dir, placed) in shared.queue.placed() {
            if !dir.is_dir() || reported.contains(&dir) {
                continue;
            }
            let Some(history) = histories.get(&placed.project) else { continue };
            let digest = check::digest(&check::tree(&dir));
            if seen.insert(dir.clone(), digest.clone()).as_ref() != Some(&digest) {
                last_change = trace::now();
            }
            let from = at.get(&dir).copied();
            match history.first_match(&digest, from.unwrap_or(0)) {
                Some(seq) if Some(seq) != from => {
                    at.insert(dir, seq);
                    shared.trace.message(&placed.server, &placed.host, trace::now(), format!("on disk: seq {seq}"));
                }
                Some(_) => {}
                None => {
                    reported.insert(dir.clone());
                    let from = from.unwrap_or(0);
                    let (invariant, what) = if history.matches_before(&digest, from) {
                        (
                            "5 an agent's last_seq never goes back",
                            format!("went back from seq {from} to an earlier tree"),
                        )
                    } else {
                        (
                            "2 nothing appears that was never written",
                            format!("holds a tree the project never had (last at seq {from})"),
                        )
                    };
                    let detail = format!("session {} on {}: {what}", placed.session, placed.host);
                    shared.found.report(&shared.trace, "watcher", invariant, detail);
                }
            }
        }
    }
}

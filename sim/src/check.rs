//! The checkers of DESIGN §10, against the model as the oracle (it is the database, and it
//! outlives every server). Here: convergence at quiescence (invariant 1), byte for byte.

use fsync_model::MemStore;
use std::collections::BTreeMap;
use std::path::Path;
use uuid::Uuid;

/// An invariant that did not hold, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// The project's live files as the source of truth holds them: path → bytes.
pub fn live_files(store: &MemStore, project: Uuid) -> BTreeMap<String, Vec<u8>> {
    let state = store.snapshot();
    state
        .files
        .range((project, String::new())..)
        .take_while(|((p, _), _)| *p == project)
        .filter_map(|((_, path), rows)| {
            let head = rows.last().filter(|h| !h.deleted)?;
            Some((path.clone(), head.content.clone().unwrap_or_default().into_bytes()))
        })
        .collect()
}

/// Every regular file under `root`, by relative path (what an agent's directory holds).
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if let (Ok(relative), Ok(bytes)) = (entry.path().strip_prefix(root), std::fs::read(entry.path())) {
                files.insert(relative.to_string_lossy().into_owned(), bytes);
            }
        }
    }
    files
}

/// How two trees differ, shortly: the paths missing, extra, or with other bytes.
pub fn difference(actual: &BTreeMap<String, Vec<u8>>, expected: &BTreeMap<String, Vec<u8>>) -> String {
    let missing: Vec<&String> = expected.keys().filter(|p| !actual.contains_key(*p)).collect();
    let extra: Vec<&String> = actual.keys().filter(|p| !expected.contains_key(*p)).collect();
    let stale: Vec<&String> =
        expected.iter().filter(|(p, b)| actual.get(*p).is_some_and(|a| a != *b)).map(|(p, _)| p).collect();
    format!("missing {missing:?}, extra {extra:?}, other bytes {stale:?}")
}

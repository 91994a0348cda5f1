//! The project the server's and the agent's `hot_paths` benches zip and extract (included by
//! path beside `text.rs`, which gives `source_text`): the same files for both.

use fsync_reference::snapshot::archive::Entry;

/// `files` text files of about `total_bytes` in all, sorted by path as the snapshot read gives
/// them, spread over 20 directories.
pub fn project(files: usize, total_bytes: usize) -> Vec<Entry> {
    let mut entries: Vec<Entry> = (0..files)
        .map(|i| Entry {
            path: format!("src/module{:02}/file{i:05}.tsx", i % 20),
            bytes: super::text::source_text(i as u64, total_bytes / files).into_bytes(),
            stored: false,
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

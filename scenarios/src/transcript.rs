//! A run's readable record: each step with its outcome, then the project, the events heard in
//! `seq` order and each session's tree. Ids are replaced with the case's names (actors,
//! `project`, sessions) and any other uuid with `<uuid>`; times never appear. Two stacks that
//! behave the same write the same transcript.

use fsync_protocol::events::ProjectEvent;
use fsync_protocol::hash::hex_sha256;
use std::collections::BTreeMap;
use std::fmt::Write;
use uuid::Uuid;

/// Listings longer than this are summarised as a count and a digest.
pub const LIST_AT_MOST: usize = 40;

#[derive(Debug, Default)]
pub struct Transcript {
    lines: Vec<String>,
    names: BTreeMap<String, String>,
}

impl Transcript {
    /// From now on `id` is written as `name`.
    pub fn name(&mut self, id: Uuid, name: &str) {
        self.names.insert(id.to_string(), name.to_owned());
    }

    pub fn heading(&mut self, heading: &str) {
        if !self.lines.is_empty() {
            self.lines.push(String::new());
        }
        self.lines.push(heading.to_owned());
    }

    pub fn line(&mut self, line: impl Into<String>) {
        self.lines.push(format!("  {}", line.into()));
    }

    /// The transcript as text, ids replaced.
    pub fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        for (id, name) in &self.names {
            text = text.replace(id, name);
        }
        anonymise_uuids(&text)
    }
}

/// The first 12 hex digits of a hash: enough to tell contents apart in a transcript.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A tree of path → content hash as lines, or a count and a digest when long.
pub fn listing(files: &BTreeMap<String, String>) -> Vec<String> {
    if files.len() > LIST_AT_MOST {
        return vec![format!("{} files, digest {}", files.len(), short(&digest(files)))];
    }
    files.iter().map(|(path, hash)| format!("{path}  {}", short(hash))).collect()
}

/// One hash for a whole tree.
pub fn digest(files: &BTreeMap<String, String>) -> String {
    let mut all = String::new();
    for (path, hash) in files {
        let _ = writeln!(all, "{path}\t{hash}");
    }
    hex_sha256(all.as_bytes())
}

/// One event as a line.
pub fn event(event: &ProjectEvent) -> String {
    match event {
        ProjectEvent::Update(u) => {
            let omitted = if u.content_omitted { " (content omitted)" } else { "" };
            format!("seq {}  file:update {} v{} {}{omitted}", u.seq, u.file_path, u.version, short(&u.content_hash))
        }
        ProjectEvent::Delete(d) => format!("seq {}  file:delete {} v{}", d.seq, d.file_path, d.version),
        ProjectEvent::Bulk(b) if b.files_omitted => format!("seq {}  bulk:apply (files omitted)", b.seq),
        ProjectEvent::Bulk(b) if b.files.len() > 8 => {
            let files: BTreeMap<String, String> = b
                .files
                .iter()
                .map(|f| (f.file_path.clone(), format!("{} {}", f.version, f.content_hash.as_deref().unwrap_or("-"))))
                .collect();
            format!("seq {}  bulk:apply {} files, digest {}", b.seq, files.len(), short(&digest(&files)))
        }
        ProjectEvent::Bulk(b) => {
            let files: Vec<String> = b
                .files
                .iter()
                .map(|f| match (&f.content_hash, f.deleted) {
                    (_, true) => format!("{} deleted v{}", f.file_path, f.version),
                    (Some(hash), false) => format!("{} v{} {}", f.file_path, f.version, short(hash)),
                    (None, false) => format!("{} v{}", f.file_path, f.version),
                })
                .collect();
            format!("seq {}  bulk:apply {}", b.seq, files.join(", "))
        }
    }
}

/// Replaces every uuid-shaped word (8-4-4-4-12 hex digits) with `<uuid>`.
fn anonymise_uuids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = text[i..].chars().next().expect("i is on a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_uuid(candidate: &[u8]) -> bool {
    candidate.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_replace_ids_and_other_uuids_are_anonymised() {
        let mut t = Transcript::default();
        let known = Uuid::from_u128(1);
        t.name(known, "alice");
        t.line(format!("{known} wrote; {} did not", Uuid::from_u128(2)));
        assert_eq!(t.render(), "  alice wrote; <uuid> did not\n");
    }

    #[test]
    fn long_listings_are_a_count_and_a_digest() {
        let files: BTreeMap<String, String> = (0..50).map(|i| (format!("f{i}"), "ab".repeat(32))).collect();
        let lines = listing(&files);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("50 files, digest "), "{lines:?}");
        let short_files: BTreeMap<String, String> = files.into_iter().take(2).collect();
        assert_eq!(listing(&short_files), vec!["f0  abababababab", "f1  abababababab"]);
    }
}

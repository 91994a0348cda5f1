//! The zip reader (`fsync_agent::extract`): any bytes as a snapshot zip, with a manifest made
//! from the entries the zip claims, extract or fail with an error — never a panic, and never a
//! byte outside the destination (zip-slip), whatever the entries' names and sizes say.
#![no_main]

use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::{ExtractLimits, Manifest, ManifestFile};
use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};

/// The files the zip's own entries describe (names, sizes, hashes of what they inflate to, read
/// with a cap), so extraction gets past the manifest check and into the writing.
fn files_of(data: &[u8]) -> Option<Vec<ManifestFile>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).ok()?;
    let mut files = Vec::new();
    for i in 0..archive.len().min(64) {
        let mut entry = archive.by_index(i).ok()?;
        let mut bytes = Vec::new();
        (&mut entry).take(1 << 20).read_to_end(&mut bytes).ok()?;
        files.push(ManifestFile {
            path: entry.name().ok()?.into_owned(),
            version: 1,
            content_hash: hex_sha256(&bytes),
            size: bytes.len() as u64,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Some(files)
}

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().expect("a temporary directory");
    let zip = root.path().join("snapshot.zip");
    std::fs::write(&zip, data).expect("write the input");
    // Deep below the root, so that an entry climbing out by `..` still lands inside the root,
    // where the walk below finds it.
    let dest = root.path().join("a/b/c/d/project");
    std::fs::create_dir_all(&dest).expect("the destination");
    let limits =
        ExtractLimits { max_files: 64, max_file_bytes: 1 << 20, max_total_bytes: 4 << 20, ..ExtractLimits::default() };
    let manifest = Manifest {
        project_id: uuid::Uuid::nil(),
        seq: 1,
        snapshot_id: "seq-1".into(),
        files: files_of(data).unwrap_or_default(),
        zip_sha256: hex_sha256(data),
    };
    let _ = fsync_agent::extract::extract(&zip, &manifest, &dest, &limits);
    // Nothing anywhere below the root but the destination's tree, its parents and the zip.
    for file in walk(root.path()) {
        assert!(file.starts_with(&dest) || file == zip, "an entry escaped the destination: {}", file.display());
    }
});

/// Every file (not directory) below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(walk(&path)),
            _ => files.push(path),
        }
    }
    files
}

//! Extracting a snapshot zip, trusting nothing in it (DESIGN §9).
//!
//! The manifest (from the orchestrator) is the authority: the zip must hold exactly its files,
//! each with the declared size and hash. Before a byte is written, every entry's name must pass
//! the path rules (no absolute path, no `..`, no backslash: no zip-slip), must not be a link or a
//! directory, and must be in the manifest; sizes and compression ratios are bounded (no zip
//! bomb). While writing, no entry may inflate past its declared size. Everything is written into
//! a fresh directory that the caller renames into place only when all of it checked out.

use crate::seekbuf::SeekBuf;
use fsync_protocol::check_path;
use fsync_protocol::hash::to_hex;
use fsync_protocol::snapshot::{ExtractLimits, Manifest, ManifestFile};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("the snapshot zip is corrupt: {0}")]
    Corrupt(String),
    #[error("the snapshot zip has a refused entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("the snapshot zip looks like a zip bomb: {0}")]
    Bomb(String),
    #[error("{path}: content hash {actual} does not match the manifest's {expected}")]
    HashMismatch { path: String, expected: String, actual: String },
    #[error("the manifest is invalid: {0}")]
    Manifest(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    pub files: usize,
    pub bytes: u64,
}

/// Checks the manifest itself against the limits and the path rules.
pub fn check_manifest(manifest: &Manifest, limits: &ExtractLimits) -> Result<(), ExtractError> {
    if manifest.files.len() > limits.max_files {
        return Err(ExtractError::Bomb(format!("{} files, at most {}", manifest.files.len(), limits.max_files)));
    }
    let mut total = 0u64;
    let mut previous: Option<&str> = None;
    for file in &manifest.files {
        check_path(&file.path).map_err(|e| ExtractError::Manifest(format!("{:?}: {e}", file.path)))?;
        if previous.is_some_and(|p| p >= file.path.as_str()) {
            return Err(ExtractError::Manifest(format!("{:?} is out of order or repeated", file.path)));
        }
        previous = Some(&file.path);
        if file.size > limits.max_file_bytes {
            return Err(ExtractError::Bomb(format!(
                "{} is {} bytes, at most {}",
                file.path, file.size, limits.max_file_bytes
            )));
        }
        total = total.saturating_add(file.size);
    }
    if total > limits.max_total_bytes {
        return Err(ExtractError::Bomb(format!("{total} bytes in all, at most {}", limits.max_total_bytes)));
    }
    Ok(())
}

/// The opened archive.
type Archive = zip::ZipArchive<SeekBuf<fs::File>>;

/// Extracts the zip at `zip_path` into `dest` (a new, empty directory), checking every entry
/// against `manifest` and `limits` before writing anything.
pub fn extract(
    zip_path: &Path,
    manifest: &Manifest,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<Extracted, ExtractError> {
    check_manifest(manifest, limits)?;
    let file = fs::File::open(zip_path).map_err(|source| io_error("open the downloaded zip", source))?;
    let file =
        SeekBuf::with_capacity(256 * 1024, file).map_err(|source| io_error("read the downloaded zip", source))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| ExtractError::Corrupt(e.to_string()))?;
    let order = check_entries(&mut archive, manifest, limits)?;
    let mut extracted = Extracted::default();
    let mut buffer = vec![0u8; 64 * 1024];
    // The directories made so far: most entries share theirs with the one before.
    let mut made = BTreeSet::new();
    for (index, want) in order {
        make_parent(dest, &want.path, &mut made)?;
        extracted.bytes += write_entry(&mut archive, index, want, dest, &mut buffer)?;
        extracted.files += 1;
    }
    Ok(extracted)
}

/// Checks every entry of the archive against the manifest; the order to extract them in.
fn check_entries<'m>(
    archive: &mut Archive,
    manifest: &'m Manifest,
    limits: &ExtractLimits,
) -> Result<Vec<(usize, &'m ManifestFile)>, ExtractError> {
    if archive.len() != manifest.files.len() {
        return Err(ExtractError::Corrupt(format!(
            "{} entries, the manifest lists {} files",
            archive.len(),
            manifest.files.len()
        )));
    }
    let expected: BTreeMap<&str, &ManifestFile> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut order = Vec::with_capacity(archive.len());
    let mut seen = BTreeMap::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(|e| ExtractError::Corrupt(e.to_string()))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let refuse = |reason: &str| ExtractError::Refused { entry: name.clone(), reason: reason.to_owned() };
        check_path(&name).map_err(|e| refuse(&e.to_string()))?;
        if entry.is_dir() {
            return Err(refuse("directory entries are not expected"));
        }
        if entry.is_symlink() || entry.unix_mode().is_some_and(|mode| mode & 0o170000 == 0o120000) {
            return Err(refuse("links are not allowed"));
        }
        if entry.encrypted() {
            return Err(refuse("encrypted entries are not allowed"));
        }
        let Some(want) = expected.get(name.as_str()) else { return Err(refuse("not in the manifest")) };
        if seen.insert(name.clone(), index).is_some() {
            return Err(refuse("appears twice"));
        }
        if entry.size() != want.size {
            return Err(ExtractError::Corrupt(format!(
                "{name}: {} bytes, the manifest says {}",
                entry.size(),
                want.size
            )));
        }
        if entry.size() > limits.ratio_floor_bytes && entry.size() / entry.compressed_size().max(1) > limits.max_ratio {
            return Err(ExtractError::Bomb(format!(
                "{name} inflates {} bytes to {}, a ratio above {}",
                entry.compressed_size(),
                entry.size(),
                limits.max_ratio
            )));
        }
        order.push((index, *want));
    }
    Ok(order)
}

/// Streams one checked entry to its file under `dest`, never past its declared size, and checks
/// its SHA-256; the bytes written.
fn write_entry(
    archive: &mut Archive,
    index: usize,
    want: &ManifestFile,
    dest: &Path,
    buffer: &mut [u8],
) -> Result<u64, ExtractError> {
    let mut entry = archive.by_index(index).map_err(|e| ExtractError::Corrupt(e.to_string()))?;
    // Written in `buffer`-sized pieces straight to the file: one write per piece, no second buffer.
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest.join(&want.path))
        .map_err(|source| io_error(format!("create {}", want.path), source))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    loop {
        let n = entry.read(buffer).map_err(|e| ExtractError::Corrupt(format!("{}: {e}", want.path)))?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > want.size {
            return Err(ExtractError::Bomb(format!("{} inflates past its declared {} bytes", want.path, want.size)));
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n]).map_err(|source| io_error(format!("write {}", want.path), source))?;
    }
    if written != want.size {
        return Err(ExtractError::Corrupt(format!("{}: {written} bytes, the manifest says {}", want.path, want.size)));
    }
    let actual = to_hex(&hasher.finalize());
    if actual != want.content_hash {
        return Err(ExtractError::HashMismatch {
            path: want.path.clone(),
            expected: want.content_hash.clone(),
            actual,
        });
    }
    Ok(written)
}

/// Creates the directory `path` goes in under `dest` unless it was made already.
fn make_parent(dest: &Path, path: &str, made: &mut BTreeSet<String>) -> Result<(), ExtractError> {
    let Some((parent, _)) = path.rsplit_once('/') else { return Ok(()) };
    if made.contains(parent) {
        return Ok(());
    }
    fs::create_dir_all(dest.join(parent))
        .map_err(|source| io_error(format!("create the directory of {path}"), source))?;
    made.insert(parent.to_owned());
    Ok(())
}

fn io_error(what: impl Into<String>, source: io::Error) -> ExtractError {
    ExtractError::Io { what: what.into(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsync_protocol::hash::hex_sha256;
    use uuid::Uuid;

    fn manifest(listed: &[(&str, &[u8])]) -> Manifest {
        let mut files: Vec<ManifestFile> = listed
            .iter()
            .map(|(p, b)| ManifestFile {
                path: p.to_string(),
                version: 1,
                content_hash: hex_sha256(b),
                size: b.len() as u64,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest { project_id: Uuid::nil(), seq: 1, snapshot_id: "seq-1".into(), files, zip_sha256: String::new() }
    }

    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    fn run(
        items: &[Item],
        listed: &[(&str, &[u8])],
        limits: ExtractLimits,
    ) -> (Result<Extracted, ExtractError>, tempfile::TempDir) {
        let scratch = tempfile::tempdir().unwrap();
        let zip_path = scratch.path().join("s.zip");
        let mut zip = zip::ZipWriter::new(fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for item in items {
            match item {
                Item::File(name, bytes) => {
                    zip.start_file(*name, options).unwrap();
                    zip.write_all(bytes).unwrap();
                }
                Item::Dir(name) => zip.add_directory(*name, options).unwrap(),
                Item::Link(name, target) => zip.add_symlink(*name, *target, options).unwrap(),
            }
        }
        zip.finish().unwrap();
        let dest = scratch.path().join("out");
        fs::create_dir(&dest).unwrap();
        (extract(&zip_path, &manifest(listed), &dest, &limits), scratch)
    }

    #[test]
    fn a_matching_zip_extracts_byte_for_byte() {
        let (result, scratch) = run(
            &[Item::File("a/b.txt", b"hello"), Item::File("c.txt", b"")],
            &[("a/b.txt", b"hello"), ("c.txt", b"")],
            ExtractLimits::default(),
        );
        assert_eq!(result.unwrap(), Extracted { files: 2, bytes: 5 });
        assert_eq!(fs::read(scratch.path().join("out/a/b.txt")).unwrap(), b"hello");
        assert_eq!(fs::read(scratch.path().join("out/c.txt")).unwrap(), b"");
    }

    #[test]
    fn links_directories_strangers_and_repeats_are_refused_before_anything_is_written() {
        type Case<'a> = (Vec<Item<'a>>, Vec<(&'a str, &'a [u8])>, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![Item::File("ok.txt", b"x"), Item::Link("l", "/etc/passwd")],
                vec![("l", b"/etc/passwd"), ("ok.txt", b"x")],
                "links",
            ),
            (vec![Item::File("ok.txt", b"x"), Item::Dir("d/")], vec![("d", b""), ("ok.txt", b"x")], "refused entry"),
            (
                vec![Item::File("ok.txt", b"x"), Item::File("extra.txt", b"y")],
                vec![("ok.txt", b"x"), ("z.txt", b"y")],
                "not in the manifest",
            ),
            (
                vec![Item::File("ok.txt", b"x"), Item::File("a\\b", b"y")],
                vec![("a/b", b"y"), ("ok.txt", b"x")],
                "refused entry",
            ),
            (vec![Item::File("ok.txt", b"x")], vec![("ok.txt", b"x"), ("z.txt", b"y")], "corrupt"),
            (vec![Item::File("ok.txt", b"xx")], vec![("ok.txt", b"x")], "corrupt"),
        ];
        for (items, listed, expect) in cases {
            let (result, scratch) = run(&items, &listed, ExtractLimits::default());
            let error = result.unwrap_err().to_string();
            assert!(error.contains(expect), "{error:?} should say {expect:?}");
            assert_eq!(fs::read_dir(scratch.path().join("out")).unwrap().count(), 0, "nothing written for {expect}");
        }
    }

    #[test]
    fn limits_bound_files_sizes_and_ratios() {
        let tight = ExtractLimits {
            max_files: 1,
            max_file_bytes: 10,
            max_total_bytes: 15,
            max_ratio: 10,
            ratio_floor_bytes: 100,
        };
        let (result, _) = run(&[Item::File("a", b"1"), Item::File("b", b"2")], &[("a", b"1"), ("b", b"2")], tight);
        assert!(matches!(result, Err(ExtractError::Bomb(_))), "too many files");
        let eleven = [b'x'; 11];
        let (result, _) = run(&[Item::File("a", &eleven)], &[("a", &eleven)], ExtractLimits { max_files: 5, ..tight });
        assert!(matches!(result, Err(ExtractError::Bomb(_))), "a file too big");
        let zeros = vec![0u8; 10_000];
        let loose = ExtractLimits { max_file_bytes: 1 << 20, max_total_bytes: 1 << 20, ..ExtractLimits::default() };
        let (result, _) = run(
            &[Item::File("z", &zeros)],
            &[("z", &zeros)],
            ExtractLimits { max_ratio: 10, ratio_floor_bytes: 100, ..loose },
        );
        assert!(matches!(result, Err(ExtractError::Bomb(_))), "a ratio too high");
        let (result, _) = run(&[Item::File("z", &zeros)], &[("z", &zeros)], loose);
        assert!(result.is_ok(), "the same file under the default ratio floor");
    }

    #[test]
    fn invalid_manifests_are_refused() {
        let limits = ExtractLimits::default();
        let mut m = manifest(&[("a", b"1"), ("b", b"2")]);
        m.files.swap(0, 1);
        assert!(matches!(check_manifest(&m, &limits), Err(ExtractError::Manifest(_))), "out of order");
        let m = manifest(&[("../a", b"1")]);
        assert!(matches!(check_manifest(&m, &limits), Err(ExtractError::Manifest(_))), "bad path");
        let mut m = manifest(&[("a", b"1")]);
        m.files.push(m.files[0].clone());
        assert!(matches!(check_manifest(&m, &limits), Err(ExtractError::Manifest(_))), "repeated");
        let mut m = manifest(&[("a", b"1")]);
        m.files[0].size = u64::MAX;
        assert!(matches!(check_manifest(&m, &limits), Err(ExtractError::Bomb(_))), "huge");
    }
}

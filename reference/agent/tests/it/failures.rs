//! Snapshots that must not be trusted: a truncated or corrupt zip, a hash mismatch, a zip-slip
//! entry, a link, a zip bomb. Each is planted in storage where the orchestrator reuses it; the
//! session fails with a clear reason and nothing is written outside the project directory (nor
//! inside it).

use crate::support::*;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::{Manifest, ManifestFile, SessionStatus, SnapshotResponse};
use fsync_testkit::PlatformOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Builds the real snapshot, then lets `plant` replace its zip (and manifest) in storage.
async fn fail_with(plant: impl FnOnce(&Manifest, Vec<u8>) -> (Vec<u8>, Manifest), expect: &str) {
    let app = spawn(PlatformOptions::default()).await;
    let seeded = seed(&app, &[("src/a.ts", "export const a = 1;\n"), ("index.html", "<html></html>")]).await;
    let reply = app.api().build_snapshot(&app.service_key, seeded.project).await.expect("build the snapshot");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let built: SnapshotResponse = serde_json::from_value(reply.body).expect("a snapshot response");
    let storage = app.dir.path().join("storage/project-snapshots").join(seeded.project.to_string());
    let zip_path = storage.join(format!("{}.zip", built.snapshot_id));
    let manifest_path = storage.join(format!("{}.json", built.snapshot_id));
    let (zip, manifest) = plant(&built.manifest, std::fs::read(&zip_path).unwrap());
    std::fs::write(&zip_path, zip).unwrap();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let id = start_session(&app, &seeded).await;
    let view = wait_for(&app, &seeded.token, id, SessionStatus::Failed).await;
    assert_eq!(view.status, SessionStatus::Failed, "{view:?}");
    let reason = view.reason.clone().unwrap_or_default();
    assert!(reason.contains(expect), "reason {reason:?} should say {expect:?}");
    let session_dir = PathBuf::from(&view.project_dir).parent().unwrap().to_path_buf();
    assert_nothing_extracted(&session_dir, &PathBuf::from(&view.project_dir));
    assert!(!app.dir.path().join("sessions/evil.txt").exists() && !app.dir.path().join("evil.txt").exists());
}

/// The session directory holds the agent's log and an empty project directory, nothing else.
fn assert_nothing_extracted(session_dir: &Path, project_dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(session_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["agent.log", "project"], "nothing else in {}", session_dir.display());
    assert!(tree(project_dir).is_empty(), "nothing in the project directory");
}

/// A zip of `entries` (name, bytes) written with the zip crate, and a manifest that lists
/// `listed` (path, bytes) and the zip's real hash.
fn crafted(
    base: &Manifest,
    entries: &[(&str, &[u8])],
    listed: &[(&str, &[u8])],
    options: zip::write::SimpleFileOptions,
) -> (Vec<u8>, Manifest) {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    let mut files: Vec<ManifestFile> = listed
        .iter()
        .map(|(path, bytes)| ManifestFile {
            path: path.to_string(),
            version: 1,
            content_hash: hex_sha256(bytes),
            size: bytes.len() as u64,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest { files, zip_sha256: hex_sha256(&zip), ..base.clone() };
    (zip, manifest)
}

fn deflated() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated)
}

#[tokio::test]
async fn a_truncated_zip_fails_the_session() {
    fail_with(|manifest, zip| (zip[..zip.len() / 2].to_vec(), manifest.clone()), "SHA-256").await;
}

#[tokio::test]
async fn a_corrupt_zip_with_a_matching_hash_fails_the_session() {
    fail_with(
        |manifest, zip| {
            let garbage: Vec<u8> = zip.iter().map(|b| b ^ 0x5a).collect();
            let manifest = Manifest { zip_sha256: hex_sha256(&garbage), ..manifest.clone() };
            (garbage, manifest)
        },
        "corrupt",
    )
    .await;
}

#[tokio::test]
async fn a_file_whose_hash_differs_from_the_manifest_fails_the_session() {
    fail_with(
        |manifest, _| {
            let (zip, mut m) =
                crafted(manifest, &[("src/a.ts", b"tampered!!")], &[("src/a.ts", b"tampered!!")], deflated());
            m.files[0].content_hash = hex_sha256(b"the original");
            (zip, m)
        },
        "does not match the manifest",
    )
    .await;
}

#[tokio::test]
async fn a_zip_slip_entry_fails_the_session() {
    fail_with(
        |manifest, _| crafted(manifest, &[("../evil.txt", b"pwned")], &[("evil.txt", b"pwned")], deflated()),
        "refused entry \"../evil.txt\"",
    )
    .await;
}

#[tokio::test]
async fn an_absolute_entry_fails_the_session() {
    fail_with(
        |manifest, _| crafted(manifest, &[("/tmp/evil.txt", b"pwned")], &[("tmp/evil.txt", b"pwned")], deflated()),
        "refused entry \"/tmp/evil.txt\"",
    )
    .await;
}

#[tokio::test]
async fn a_zip_bomb_fails_the_session() {
    let zeros = vec![0u8; 64 * 1024 * 1024];
    fail_with(
        move |manifest, _| crafted(manifest, &[("bomb.bin", &zeros)], &[("bomb.bin", &zeros)], deflated()),
        "zip bomb",
    )
    .await;
}

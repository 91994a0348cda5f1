//! The agent's disk hot paths (DESIGN §9, §11), measured with criterion on a temporary
//! directory:
//!
//! - `extract`: a snapshot zip (the server's own `write_zip`, so the same bytes a session
//!   downloads) checked against its manifest and written out with a SHA-256 check per file —
//!   200 files / 1 MiB and 2,000 files / 16 MiB, each time into a new directory. This is the
//!   disk half of every cold session start.
//! - `apply_create` / `apply_update`: one batch of 1, 100 or 1,000 small files (1 KiB) applied
//!   to a `ProjectDir` — checked, hashed, staged and renamed into place — into a fresh directory
//!   (a generation creating files) and over the same files already there (edits). Every change
//!   an agent follows goes through this.
//!
//! Inputs are fixed and seeded. Directories are made and removed outside the measured time,
//! under Cargo's `target/tmp` (on a disk, as session directories are; the system temp directory
//! may be tmpfs), or under `FSYNC_BENCH_DIR` when set: `FSYNC_BENCH_DIR=/dev/shm` measures the
//! code without the disk. On a disk the figures are mostly the filesystem's: creating files and
//! directories dominates, and on a shared virtual disk it varies with the machine's other work.
//!
//! `cargo bench -p fsync-agent --bench hot_paths` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use fsync_agent::apply::ProjectDir;
use fsync_agent::extract::extract;
use fsync_protocol::events::FileChange;
use fsync_protocol::hash::hex_sha256;
use fsync_protocol::snapshot::{ExtractLimits, Manifest, ManifestFile};
use fsync_reference::snapshot::archive::write_zip;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use uuid::Uuid;

fn extraction(c: &mut Criterion) {
    let scratch = scratch();
    let mut group = c.benchmark_group("extract");
    // One extraction of the large zip takes tens of milliseconds: equal samples, not a ramp.
    group.sampling_mode(SamplingMode::Flat);
    for (name, files, total_bytes) in [("200_files_1MiB", 200, 1 << 20), ("2000_files_16MiB", 2000, 16 << 20)] {
        let (zip, manifest) = snapshot(files, total_bytes);
        let zip_path = scratch.path().join(format!("{name}.zip"));
        std::fs::write(&zip_path, zip).expect("write the zip");
        let limits = ExtractLimits::default();
        group.throughput(Throughput::Bytes(manifest.total_size()));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || fresh_dir(scratch.path()),
                |dest| {
                    let extracted = extract(&zip_path, &manifest, dest.path(), &limits).unwrap();
                    assert_eq!(extracted.files, files);
                    dest // removed after the measurement
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn applying(c: &mut Criterion) {
    let scratch = scratch();
    let sizes = [("1_file", 1), ("100_files", 100), ("1000_files", 1000)];

    let mut group = c.benchmark_group("apply_create");
    group.sampling_mode(SamplingMode::Flat);
    for (name, files) in sizes {
        let batch = batch(files);
        group.throughput(Throughput::Elements(files as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || {
                    let tmp = fresh_dir(scratch.path());
                    let dir = ProjectDir::open(tmp.path().join("project")).expect("open a project directory");
                    (tmp, dir)
                },
                |(tmp, dir)| {
                    assert_eq!(dir.apply(&batch).unwrap().written, files);
                    (tmp, dir) // removed after the measurement
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("apply_update");
    for (name, files) in sizes {
        let batch = batch(files);
        let tmp = fresh_dir(scratch.path());
        let dir = ProjectDir::open(tmp.path().join("project")).expect("open a project directory");
        dir.apply(&batch).unwrap();
        group.throughput(Throughput::Elements(files as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| dir.apply(&batch).unwrap()));
    }
    group.finish();
}

/// A scratch directory under `FSYNC_BENCH_DIR`, else Cargo's `target/tmp`; removed when dropped.
fn scratch() -> TempDir {
    let base =
        std::env::var_os("FSYNC_BENCH_DIR").map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    TempDir::new_in(&base).unwrap_or_else(|e| panic!("a scratch directory in {}: {e}", base.display()))
}

fn fresh_dir(scratch: &Path) -> TempDir {
    TempDir::new_in(scratch).expect("a temporary directory")
}

/// One batch writing `files` files of 1 KiB over 10 directories, each with its content hash.
fn batch(files: usize) -> Vec<FileChange> {
    (0..files)
        .map(|i| {
            let content = source_text(i as u64, 1024);
            FileChange::Write {
                path: format!("src/components/c{}/File{i:04}.tsx", i % 10),
                file_type: "typescript".into(),
                content_hash: Some(hex_sha256(content.as_bytes())),
                content: Some(content),
                version: 1,
            }
        })
        .collect()
}

/// The snapshot zip of `files` text files of about `total_bytes` in all, and its manifest.
fn snapshot(files: usize, total_bytes: usize) -> (Vec<u8>, Manifest) {
    let entries = project(files, total_bytes);
    let zip = write_zip(Cursor::new(Vec::new()), &entries).expect("an in-memory zip").into_inner();
    let manifest = Manifest {
        project_id: Uuid::from_u128(0x6f1d2c3b_4a5e_4f60_8a7b_9c0d1e2f3a4b),
        seq: 1,
        snapshot_id: "seq-1".into(),
        files: entries
            .iter()
            .map(|e| ManifestFile {
                path: e.path.clone(),
                version: 1,
                content_hash: hex_sha256(&e.bytes),
                size: e.bytes.len() as u64,
            })
            .collect(),
        zip_sha256: hex_sha256(&zip),
    };
    (zip, manifest)
}

#[path = "../../protocol/benches/support/text.rs"]
mod text;
use text::source_text;

#[path = "../../protocol/benches/support/project.rs"]
mod project;
use project::project;

#[path = "../../protocol/benches/support/config.rs"]
mod config;

criterion_group! {
    name = benches;
    config = config::short();
    targets = extraction, applying
}
criterion_main!(benches);

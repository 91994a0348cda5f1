//! The snapshot's deterministic zip (DESIGN §9, §11), measured with criterion: building the zip
//! of a project's files is the CPU-bound part of every cold session start (deflate level 1, the
//! same options and order as `build_or_reuse`), so its throughput bounds how fast a snapshot can
//! be made. The zip is written into memory through `snapshot::archive::write_zip`: what is
//! measured is the archive itself, not the temporary file or the upload around it. Two projects
//! of source-like text, fixed and seeded: 200 files / 1 MiB and 2,000 files / 16 MiB.
//!
//! `cargo bench -p fsync-reference --bench hot_paths` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use fsync_reference::snapshot::archive::{write_zip, Entry};
use std::hint::black_box;
use std::io::Cursor;

fn zip_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("zip_build");
    // One build of the large project takes tens of milliseconds: equal samples, not a ramp.
    group.sampling_mode(SamplingMode::Flat);
    for (name, files, total_bytes) in [("200_files_1MiB", 200, 1 << 20), ("2000_files_16MiB", 2000, 16 << 20)] {
        let entries = project(files, total_bytes);
        let bytes: usize = entries.iter().map(|e| e.bytes.len()).sum();
        let zip_bytes = build(&entries).len();
        println!("zip_build/{name}: {files} files, {bytes} bytes -> zip {zip_bytes} bytes");
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &entries, |b, entries| {
            b.iter(|| build(black_box(entries)))
        });
    }
    group.finish();
}

fn build(entries: &[Entry]) -> Vec<u8> {
    let capacity = entries.iter().map(|e| e.bytes.len()).sum::<usize>() / 2;
    write_zip(Cursor::new(Vec::with_capacity(capacity)), entries).expect("an in-memory zip").into_inner()
}

#[path = "../../protocol/benches/support/text.rs"]
mod text;

#[path = "../../protocol/benches/support/project.rs"]
mod project;
use project::project;

#[path = "../../protocol/benches/support/config.rs"]
mod config;

criterion_group! {
    name = benches;
    config = config::short();
    targets = zip_build
}
criterion_main!(benches);

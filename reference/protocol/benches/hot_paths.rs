//! Hot paths of the shared protocol (DESIGN §11), measured with criterion: the content hash
//! (every write, every extracted file, every applied change is hashed), `check_path` (every path
//! the client sends, the agent extracts or applies), and a Realtime event on the wire — the
//! server encoding a broadcast delivery for each subscriber (`encode_broadcast`, vsn 1.0.0 and
//! 2.0.0) and a consumer decoding it into a `ProjectEvent` as the feed does (text frames in both
//! serializations, and 2.0.0's binary kind-3 push, the frame realtime-js sends for
//! `channel.send`). Inputs are fixed and seeded, so every run measures the same bytes.
//!
//! `cargo bench -p fsync-protocol --bench hot_paths` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fsync_protocol::events::{BulkApply, BulkFile, FileDelete, FileUpdate, ProjectEvent};
use fsync_protocol::hash::{content_hash, hex_sha256};
use fsync_protocol::limits::MAX_PATH_BYTES;
use fsync_protocol::path::check_path;
use fsync_protocol::realtime::{decode_binary, decode_text, encode_broadcast, Frame, Vsn, KIND_USER_BROADCAST_PUSH};
use serde_json::Value;
use std::hint::black_box;

const TOPIC: &str = "realtime:project:6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b";
const MESSAGE_ID: &str = "0b9e8d7c-6a5f-4e3d-9c2b-1a0f9e8d7c6b";
const TIMESTAMP: &str = "2026-01-01T00:00:00.000000+00:00";

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("content_hash");
    for (name, len) in [("1KiB", 1024), ("128KiB", 128 * 1024), ("5MiB", 5 * 1024 * 1024)] {
        let content = source_text(1, len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &content, |b, content| {
            b.iter(|| content_hash(black_box(content)))
        });
    }
    group.finish();
}

fn paths(c: &mut Criterion) {
    let long = long_path(1000);
    assert!(long.len() <= MAX_PATH_BYTES && check_path(&long).is_ok());
    let cases = [
        ("typical", "src/components/ui/Button.tsx".to_owned(), true),
        ("long_1000B", long, true),
        // A zip-slip attempt: refused only at its `..` segment, after every other rule ran.
        ("bad_dot_segment", "src/components/../../../../etc/passwd".to_owned(), false),
        ("bad_control_char", "src/components/Button\u{0}.tsx".to_owned(), false),
    ];
    let mut group = c.benchmark_group("check_path");
    for (name, path, ok) in cases {
        assert_eq!(check_path(&path).is_ok(), ok, "{name}");
        group.bench_with_input(BenchmarkId::from_parameter(name), &path, |b, path| {
            b.iter(|| check_path(black_box(path)))
        });
    }
    group.finish();
}

fn events(c: &mut Criterion) {
    let events = [
        ("file_update", ProjectEvent::UPDATE, file_update_json()),
        ("file_delete", ProjectEvent::DELETE, file_delete_json()),
        ("bulk_apply_100", ProjectEvent::BULK, bulk_apply_json(100)),
    ];

    let mut group = c.benchmark_group("event_encode");
    for (name, event, payload) in &events {
        for (vsn_name, vsn) in [("v1", Vsn::V1), ("v2", Vsn::V2)] {
            let len = encode_broadcast(vsn, TOPIC, event, payload, MESSAGE_ID).len();
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_function(BenchmarkId::new(*name, vsn_name), |b| {
                b.iter(|| encode_broadcast(black_box(vsn), TOPIC, event, black_box(payload), MESSAGE_ID))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("event_decode");
    for (name, event, payload) in &events {
        let seq = serde_json::from_str::<Value>(payload).unwrap()["seq"].as_i64().unwrap();
        for (vsn_name, vsn) in [("v1", Vsn::V1), ("v2", Vsn::V2)] {
            let text = encode_broadcast(vsn, TOPIC, event, payload, MESSAGE_ID);
            assert_eq!(to_event(&decode_text(vsn, &text).unwrap()).seq(), seq);
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(*name, vsn_name), &text, |b, text| {
                b.iter(|| to_event(&decode_text(vsn, black_box(text)).unwrap()))
            });
        }
        let binary = kind3_push(TOPIC, event, payload);
        assert_eq!(to_event(&decode_binary(&binary).unwrap()).seq(), seq);
        group.throughput(Throughput::Bytes(binary.len() as u64));
        group.bench_with_input(BenchmarkId::new(*name, "v2_binary"), &binary, |b, binary| {
            b.iter(|| to_event(&decode_binary(black_box(binary)).unwrap()))
        });
    }
    group.finish();
}

/// A broadcast frame's event, the way the client's feed takes it out (`on_broadcast`).
fn to_event(frame: &Frame) -> ProjectEvent {
    let name = frame.payload.get("event").and_then(Value::as_str).expect("a broadcast has an event name");
    let payload = frame.payload.get("payload").unwrap_or(&Value::Null);
    ProjectEvent::parse(name, payload).expect("a project event").expect("a well-formed event")
}

/// A 2.0.0 kind-3 user broadcast push as realtime-js encodes it: the header (kind, the lengths
/// of join_ref, ref, topic, event and metadata, the payload encoding: 1 = JSON), then the fields.
fn kind3_push(topic: &str, event: &str, payload_json: &str) -> Vec<u8> {
    let (join_ref, msg_ref) = ("1", "42");
    let mut out =
        vec![KIND_USER_BROADCAST_PUSH, join_ref.len() as u8, msg_ref.len() as u8, topic.len() as u8, event.len() as u8];
    out.extend([0, 1]);
    for part in [join_ref, msg_ref, topic, event, payload_json] {
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// A `file:update` of a 2 KiB source file, content inline.
fn file_update_json() -> String {
    let content = source_text(2, 2048);
    let event = FileUpdate {
        file_path: "src/components/ui/Button.tsx".into(),
        file_type: "typescript".into(),
        content_hash: content_hash(&content),
        content: Some(content),
        content_omitted: false,
        version: 7,
        seq: 1234,
        timestamp: TIMESTAMP.into(),
    };
    serde_json::to_string(&event).unwrap()
}

fn file_delete_json() -> String {
    let event = FileDelete {
        file_path: "src/components/ui/Button.tsx".into(),
        version: 8,
        seq: 1235,
        timestamp: TIMESTAMP.into(),
    };
    serde_json::to_string(&event).unwrap()
}

/// A `bulk:apply` listing `files` written files.
fn bulk_apply_json(files: usize) -> String {
    let files = (0..files)
        .map(|i| BulkFile {
            file_path: format!("src/generated/module{:02}/file{i:04}.ts", i % 10),
            version: 1,
            content_hash: Some(hex_sha256(&i.to_le_bytes())),
            deleted: false,
        })
        .collect();
    serde_json::to_string(&BulkApply { seq: 1236, files, files_omitted: false, timestamp: TIMESTAMP.into() }).unwrap()
}

/// A valid path of exactly `len` bytes: directory segments of 11 bytes, then a file name.
fn long_path(len: usize) -> String {
    let mut path = String::new();
    let mut i = 0;
    while path.len() + 11 + 8 <= len {
        path.push_str(&format!("segment{i:03}/"));
        i += 1;
    }
    let name_len = len - path.len() - 3;
    path.push_str(&"f".repeat(name_len));
    path.push_str(".ts");
    path
}

#[path = "support/text.rs"]
mod text;
use text::source_text;

#[path = "support/config.rs"]
mod config;

criterion_group! {
    name = benches;
    config = config::short();
    targets = hashing, paths, events
}
criterion_main!(benches);

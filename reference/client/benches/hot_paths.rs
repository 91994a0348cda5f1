//! The consumer's sequencer (DESIGN §5.3, §11), measured with criterion: every event a feed
//! receives passes through `Sequencer::event`, and every catch-up answer through
//! `Sequencer::caught_up`, so its cost per event bounds a consumer's event rate before any I/O.
//! Three fixed streams of `file:update` events (200 bytes of content each), each fed to a new
//! sequencer at base 0:
//!
//! - `in_order`: seqs 1..=10,000, each applied;
//! - `with_duplicates`: the same, every event delivered twice (the repeat ignored);
//! - `gaps_and_catch_ups`: seqs 1..=10,000 with one event in every 100 lost; the next four
//!   events each ask for a catch-up, and then the answer (the lost change and those four) comes
//!   and is applied as one batch.
//!
//! The events are cloned outside the measured time (the sequencer takes them by value).
//!
//! `cargo bench -p fsync-client --bench hot_paths` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use fsync_client::realtime::{Sequencer, Step};
use fsync_protocol::api::{Change, Changes};
use fsync_protocol::events::{FileUpdate, ProjectEvent};

const EVENTS: i64 = 10_000;
/// One event in every `GAP_EVERY` is lost in `gaps_and_catch_ups`.
const GAP_EVERY: i64 = 100;
/// Events that arrive between a lost one and the catch-up's answer.
const ANSWER_AFTER: i64 = 4;

/// What reaches the sequencer: an event, or the answer of a catch-up it asked for.
#[derive(Clone)]
enum Delivery {
    Event(ProjectEvent),
    Answer(Changes),
}

/// What a stream amounted to, checked after each run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    applied_changes: usize,
    ignored: usize,
    catch_ups_asked: usize,
    last_seq: Option<i64>,
}

fn sequencer(c: &mut Criterion) {
    let in_order: Vec<Delivery> = (1..=EVENTS).map(|seq| Delivery::Event(update(seq))).collect();
    let with_duplicates: Vec<Delivery> = in_order.iter().flat_map(|d| [d.clone(), d.clone()]).collect();
    let mut gaps = Vec::new();
    for seq in 1..=EVENTS {
        let lost = seq % GAP_EVERY == GAP_EVERY / 2;
        if !lost {
            gaps.push(Delivery::Event(update(seq)));
        }
        if seq % GAP_EVERY == GAP_EVERY / 2 + ANSWER_AFTER {
            let changes = (seq - ANSWER_AFTER..=seq).map(change).collect();
            gaps.push(Delivery::Answer(Changes { seq, changes }));
        }
    }
    let gap_count = (EVENTS / GAP_EVERY) as usize;
    let streams = [
        (
            "in_order",
            in_order,
            Outcome { applied_changes: EVENTS as usize, last_seq: Some(EVENTS), ..Outcome::default() },
        ),
        (
            "with_duplicates",
            with_duplicates,
            Outcome {
                applied_changes: EVENTS as usize,
                ignored: EVENTS as usize,
                last_seq: Some(EVENTS),
                ..Outcome::default()
            },
        ),
        (
            "gaps_and_catch_ups",
            gaps,
            Outcome {
                applied_changes: EVENTS as usize,
                catch_ups_asked: gap_count * ANSWER_AFTER as usize,
                last_seq: Some(EVENTS),
                ..Outcome::default()
            },
        ),
    ];

    let mut group = c.benchmark_group("sequencer");
    for (name, stream, expected) in &streams {
        assert_eq!(&run(stream.clone()), expected, "{name}");
        group.throughput(Throughput::Elements(stream.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(|| stream.clone(), run, BatchSize::LargeInput)
        });
    }
    group.finish();
}

/// Feeds `stream` to a sequencer at base 0, as a feed's socket loop would.
fn run(stream: Vec<Delivery>) -> Outcome {
    let mut sequencer = Sequencer::new(Some(0));
    let mut outcome = Outcome::default();
    for delivery in stream {
        match delivery {
            Delivery::Event(event) => match sequencer.event(event) {
                Step::Apply { changes, .. } => outcome.applied_changes += changes.len(),
                Step::Nothing => outcome.ignored += 1,
                Step::CatchUp { .. } => outcome.catch_ups_asked += 1,
            },
            Delivery::Answer(answer) => {
                if let Some((_, changes)) = sequencer.caught_up(answer).apply {
                    outcome.applied_changes += changes.len();
                }
            }
        }
    }
    outcome.last_seq = sequencer.last_seq();
    outcome
}

fn update(seq: i64) -> ProjectEvent {
    ProjectEvent::Update(FileUpdate {
        file_path: format!("src/components/c{}/File{seq:05}.tsx", seq % 10),
        file_type: "typescript".into(),
        content: Some(content(seq)),
        content_omitted: false,
        content_hash: format!("{seq:064x}"),
        version: 1,
        seq,
        timestamp: "2026-01-01T00:00:00.000000+00:00".into(),
    })
}

/// The row `list_changes_since` gives for the change `update(seq)` carried.
fn change(seq: i64) -> Change {
    Change {
        file_path: format!("src/components/c{}/File{seq:05}.tsx", seq % 10),
        file_type: "typescript".into(),
        content: Some(content(seq)),
        content_hash: Some(format!("{seq:064x}")),
        version: 1,
        deleted: false,
        seq,
    }
}

fn content(seq: i64) -> String {
    let line = format!("export const value{seq} = {seq};\n");
    line.repeat(200 / line.len() + 1)[..200].to_owned()
}

#[path = "../../protocol/benches/support/config.rs"]
mod config;

criterion_group! {
    name = benches;
    config = config::short();
    targets = sequencer
}
criterion_main!(benches);

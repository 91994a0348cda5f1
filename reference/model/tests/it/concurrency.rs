//! Concurrency properties on real PostgreSQL (DESIGN §10, invariants 2-6): many clients doing
//! random compare-and-set writes at once, then a checker over the full version history.

use crate::{cases, pg_history, shared, Who, World};
use fsync_store::data::{RpcCall, RpcOutput, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::time::Instant;

const CLIENTS: usize = 8;
const OPS_PER_CLIENT: usize = 25;
const PATHS: &[&str] = &["x.txt", "y.txt", "z.txt"];

#[derive(Debug, Clone)]
enum Kind {
    Upsert { path: String, content: String },
    Delete { path: String },
    Bulk { files: Vec<(String, String)> },
}

/// One client call and what came back.
#[derive(Debug, Clone)]
struct Record {
    kind: Kind,
    expected: Vec<Option<i32>>,
    start: Instant,
    end: Instant,
    result: Result<Value, (u16, Value)>,
}

async fn client(world: Arc<World>, id: usize, seed: u64) -> Vec<Record> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pg = &shared().pg;
    let who = if id.is_multiple_of(2) { Who::Owner } else { Who::Editor };
    let auth = world.auth(who);
    // What this client last saw of each path's version.
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..OPS_PER_CLIENT {
        let pick_expected = |rng: &mut fastrand::Rng, seen: &BTreeMap<String, i32>, path: &str| match rng.u8(0..10) {
            0 => None,
            1 => Some(rng.i32(0..4)),
            _ => Some(*seen.get(path).unwrap_or(&0)),
        };
        let path = PATHS[rng.usize(0..PATHS.len())].to_owned();
        let content = format!("client {id} op {i}");
        let (kind, expected, function, args) = match rng.u8(0..10) {
            0..=5 => {
                let e = pick_expected(&mut rng, &seen, &path);
                let args = json!({"project_uuid": world.project, "p_file_path": path, "p_content": content, "p_file_type": "text", "expected_version": e});
                (Kind::Upsert { path, content }, vec![e], "upsert_project_file", args)
            }
            6..=7 => {
                let e = pick_expected(&mut rng, &seen, &path);
                let args = json!({"project_uuid": world.project, "p_file_path": path, "expected_version": e});
                (Kind::Delete { path }, vec![e], "delete_project_file", args)
            }
            _ => {
                let second = PATHS[(PATHS.iter().position(|p| *p == path).unwrap() + 1) % PATHS.len()].to_owned();
                let files = vec![(path.clone(), format!("{content} a")), (second.clone(), format!("{content} b"))];
                let expected: Vec<Option<i32>> = files.iter().map(|(p, _)| pick_expected(&mut rng, &seen, p)).collect();
                let entries: Vec<Value> = files
                    .iter()
                    .zip(&expected)
                    .map(
                        |((p, c), e)| json!({"file_path": p, "file_type": "text", "content": c, "expected_version": e}),
                    )
                    .collect();
                let args = json!({"project_uuid": world.project, "files": entries});
                (Kind::Bulk { files }, expected, "bulk_upsert_project_files", args)
            }
        };
        let Value::Object(args) = args else { unreachable!() };
        let start = fsync_testkit::now();
        let outcome = pg.rpc(&auth, RpcCall { function: function.to_owned(), args, read_only: false }).await;
        let end = fsync_testkit::now();
        let result = match outcome {
            Ok(RpcOutput::Json(text)) => Ok(serde_json::from_str::<Value>(&text).unwrap()),
            Ok(RpcOutput::NoContent) => Ok(Value::Null),
            Err(e) => {
                let details =
                    e.body.details.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
                Err((e.status.as_u16(), details))
            }
        };
        // Learn versions from successes and from conflicts' details.
        match (&result, &kind) {
            (Ok(v), Kind::Bulk { .. }) => {
                for f in v["files"].as_array().unwrap() {
                    seen.insert(f["file_path"].as_str().unwrap().to_owned(), f["version"].as_i64().unwrap() as i32);
                }
            }
            (Ok(v), Kind::Upsert { path, .. } | Kind::Delete { path }) => {
                seen.insert(path.clone(), v["version"].as_i64().unwrap() as i32);
            }
            (Err((409, d)), _) => {
                seen.insert(d["file_path"].as_str().unwrap().to_owned(), d["current_version"].as_i64().unwrap() as i32);
            }
            _ => {}
        }
        records.push(Record { kind, expected, start, end, result });
    }
    records
}

/// The seq an acknowledged write took, if it wrote anything.
fn written_seq(record: &Record) -> Option<i64> {
    let value = record.result.as_ref().ok()?;
    match record.kind {
        Kind::Bulk { .. } => {
            value["files"].as_array()?.iter().any(|f| f["noop"] == false).then(|| value["seq"].as_i64())?
        }
        _ => (value["noop"] == false).then(|| value["seq"].as_i64())?,
    }
}

#[test]
fn concurrent_compare_and_set_histories_keep_every_invariant() {
    for round in 0..cases(3) as u64 {
        shared().runtime.block_on(check_round(round));
    }
}

async fn check_round(round: u64) {
    let world = Arc::new(World::new(&shared().db).await);
    let tasks: Vec<_> = (0..CLIENTS).map(|c| tokio::spawn(client(world.clone(), c, round * 1000 + c as u64))).collect();
    let mut records = Vec::new();
    for task in tasks {
        records.extend(task.await.unwrap());
    }
    let context = format!("round {round} (replay: FSYNC_PROPTEST_SCALE unset runs rounds 0..3)");
    for r in &records {
        if let Err((status, _)) = &r.result {
            let allowed = *status == 409 || (*status == 404 && matches!(r.kind, Kind::Delete { .. }));
            assert!(allowed, "{context}: only conflicts (and deletes of never-written paths) fail: {r:?}");
        }
    }
    // Not vacuous: writers both won and lost races.
    let won = records.iter().filter(|r| written_seq(r).is_some()).count();
    let lost = records.iter().filter(|r| matches!(r.result, Err((409, _)))).count();
    assert!(
        won >= 20 && lost >= 5,
        "{context}: {won} writes won, {lost} lost: too little contention to prove anything"
    );
    let (history, project_seq) = pg_history(&shared().db, world.project).await;

    // Invariant 3: per path, versions 1..n with no gap or duplicate, exactly one head (the last).
    let mut by_path: BTreeMap<&str, Vec<&crate::HistoryRow>> = BTreeMap::new();
    for row in &history {
        by_path.entry(row.0.as_str()).or_default().push(row);
    }
    for (path, rows) in &by_path {
        let versions: Vec<i32> = rows.iter().map(|r| r.1).collect();
        assert_eq!(versions, (1..=rows.len() as i32).collect::<Vec<_>>(), "{context}: versions of {path}");
        let heads: Vec<i32> = rows.iter().filter(|r| r.3).map(|r| r.1).collect();
        assert_eq!(heads, vec![rows.len() as i32], "{context}: one head for {path}, the newest");
        let seqs: Vec<i64> = rows.iter().map(|r| r.2).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{context}: seq grows with version on {path}");
    }

    // Invariant 5: seq is gapless: every seq 1..=project seq was taken by exactly one write.
    let used: BTreeSet<i64> = history.iter().map(|r| r.2).collect();
    assert_eq!(used, (1..=project_seq).collect::<BTreeSet<_>>(), "{context}: gapless seq");
    let acked_seqs: Vec<i64> = records.iter().filter_map(written_seq).collect();
    let distinct: BTreeSet<i64> = acked_seqs.iter().copied().collect();
    assert_eq!(acked_seqs.len(), distinct.len(), "{context}: no two acknowledged writes share a seq");
    assert_eq!(distinct, used, "{context}: every seq belongs to an acknowledged write and vice versa");

    // Invariants 2 and 6: each acknowledged write is in the history exactly as acknowledged
    // (a bulk whole, under its one seq); nothing else is.
    let mut expected_rows: BTreeSet<(String, i32, i64, Option<String>)> = BTreeSet::new();
    for r in &records {
        let Some(seq) = written_seq(r) else { continue };
        let value = r.result.as_ref().unwrap();
        match &r.kind {
            Kind::Upsert { path, content } => {
                expected_rows.insert((
                    path.clone(),
                    value["version"].as_i64().unwrap() as i32,
                    seq,
                    Some(content.clone()),
                ));
            }
            Kind::Delete { path } => {
                expected_rows.insert((path.clone(), value["version"].as_i64().unwrap() as i32, seq, None));
            }
            Kind::Bulk { files } => {
                for (f, (path, content)) in value["files"].as_array().unwrap().iter().zip(files) {
                    assert_eq!(f["file_path"], json!(path));
                    if f["noop"] == false {
                        expected_rows.insert((
                            path.clone(),
                            f["version"].as_i64().unwrap() as i32,
                            seq,
                            Some(content.clone()),
                        ));
                    }
                }
            }
        }
    }
    let actual_rows: BTreeSet<(String, i32, i64, Option<String>)> =
        history.iter().map(|r| (r.0.clone(), r.1, r.2, r.7.clone())).collect();
    assert_eq!(actual_rows, expected_rows, "{context}: the history is exactly the acknowledged writes");

    // Invariant 4: a write with expected_version n committed only on head n (0: no live file).
    let row_at =
        |path: &str, version: i32| by_path.get(path).and_then(|rows| rows.iter().find(|r| r.1 == version).copied());
    for r in &records {
        let Some(value) = r.result.as_ref().ok() else { continue };
        let written: Vec<(String, i32, bool)> = match &r.kind {
            Kind::Upsert { path, .. } | Kind::Delete { path } => {
                vec![(path.clone(), value["version"].as_i64().unwrap() as i32, value["noop"] == false)]
            }
            Kind::Bulk { .. } => value["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["file_path"].as_str().unwrap().to_owned(),
                        f["version"].as_i64().unwrap() as i32,
                        f["noop"] == false,
                    )
                })
                .collect(),
        };
        for ((path, version, wrote), expected) in written.iter().zip(&r.expected) {
            let (Some(n), true) = (expected, wrote) else { continue };
            if *n == 0 {
                let previous_is_gone = *version == 1 || row_at(path, version - 1).is_some_and(|prev| prev.4);
                assert!(previous_is_gone, "{context}: create-only write on {path} v{version} over a live file");
            } else {
                assert_eq!(*version, n + 1, "{context}: compare-and-set on {path} with expected {n} wrote v{version}");
            }
        }
    }

    // Invariant 5, real time: a write acknowledged before another began has the smaller seq.
    let timed: Vec<(Instant, Instant, i64)> =
        records.iter().filter_map(|r| Some((r.start, r.end, written_seq(r)?))).collect();
    for a in &timed {
        for b in &timed {
            if a.1 < b.0 {
                assert!(a.2 < b.2, "{context}: seq {} acknowledged before seq {} began", a.2, b.2);
            }
        }
    }
}

//! For random histories: the snapshot at seq a, plus `list_changes_since(a)` taken at seq b,
//! equals the snapshot at b (DESIGN §5) — on PostgreSQL and on the model alike.

use crate::{cases, shared, Who, World};
use fsync_model::MemStore;
use fsync_reference::PgStore;
use fsync_store::data::{RpcCall, RpcOutput, Store};
use fsync_store::RequestAuth;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const PATHS: &[&str] = &["a", "b/c", "d"];

#[derive(Debug, Clone)]
enum Write {
    Upsert(usize, u8),
    Delete(usize),
    Bulk(Vec<(usize, Option<u8>)>),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        5 => (0..PATHS.len(), 0..4u8).prop_map(|(p, c)| Write::Upsert(p, c)),
        2 => (0..PATHS.len()).prop_map(Write::Delete),
        2 => prop::collection::btree_map(0..PATHS.len(), prop::option::of(0..4u8), 1..3)
            .prop_map(|m| Write::Bulk(m.into_iter().collect())),
    ]
}

/// path → (content, version)
type Snapshot = BTreeMap<String, (Option<String>, i64)>;

async fn call(store: &impl Store, auth: &RequestAuth, function: &str, args: Value) -> Option<Value> {
    let Value::Object(args) = args else { unreachable!() };
    match store.rpc(auth, RpcCall { function: function.to_owned(), args, read_only: false }).await {
        Ok(RpcOutput::Json(text)) => Some(serde_json::from_str(&text).unwrap()),
        _ => None,
    }
}

async fn snapshot(store: &impl Store, auth: &RequestAuth, project: uuid::Uuid) -> (Snapshot, i64) {
    let files = call(store, auth, "list_current_files", json!({"project_uuid": project})).await.unwrap();
    let changes =
        call(store, auth, "list_changes_since", json!({"project_uuid": project, "since_seq": 0})).await.unwrap();
    let snap = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file_path"].as_str().unwrap().to_owned(),
                (f["content"].as_str().map(str::to_owned), f["version"].as_i64().unwrap()),
            )
        })
        .collect();
    (snap, changes["seq"].as_i64().unwrap())
}

fn apply(mut snap: Snapshot, changes: &Value) -> Snapshot {
    for c in changes["changes"].as_array().unwrap() {
        let path = c["file_path"].as_str().unwrap().to_owned();
        if c["deleted"] == true {
            snap.remove(&path);
        } else {
            snap.insert(path, (c["content"].as_str().map(str::to_owned), c["version"].as_i64().unwrap()));
        }
    }
    snap
}

async fn check_store(
    store: &impl Store,
    auth: &RequestAuth,
    project: uuid::Uuid,
    writes: &[Write],
    picks: &[prop::sample::Index],
) -> Result<(), TestCaseError> {
    let mut snapshots: Vec<(i64, Snapshot)> = vec![(0, Snapshot::new())];
    for (k, w) in writes.iter().enumerate() {
        let _ = match w {
            Write::Upsert(p, c) => {
                call(store, auth, "upsert_project_file", json!({"project_uuid": project, "p_file_path": PATHS[*p], "p_content": format!("c{c}"), "p_file_type": "text"})).await
            }
            Write::Delete(p) => call(store, auth, "delete_project_file", json!({"project_uuid": project, "p_file_path": PATHS[*p]})).await,
            Write::Bulk(entries) => {
                let files: Vec<Value> = entries
                    .iter()
                    .map(|(p, c)| match c {
                        Some(c) => json!({"file_path": PATHS[*p], "file_type": "text", "content": format!("c{c}")}),
                        None => json!({"file_path": PATHS[*p], "delete": true}),
                    })
                    .collect();
                call(store, auth, "bulk_upsert_project_files", json!({"project_uuid": project, "files": files})).await
            }
        };
        let (now, seq_b) = snapshot(store, auth, project).await;
        // Any earlier snapshot a, plus the changes since a as listed now, is the snapshot now.
        let (seq_a, snap_a) = picks[k].get(&snapshots).clone();
        let changes = call(store, auth, "list_changes_since", json!({"project_uuid": project, "since_seq": seq_a}))
            .await
            .unwrap();
        prop_assert_eq!(changes["seq"].as_i64(), Some(seq_b));
        prop_assert_eq!(
            apply(snap_a, &changes),
            now.clone(),
            "snapshot at seq {} plus changes since it != snapshot at seq {}",
            seq_a,
            seq_b
        );
        snapshots.push((seq_b, now));
    }
    Ok(())
}

#[test]
fn a_snapshot_plus_the_changes_since_it_is_the_later_snapshot() {
    let config = Config {
        cases: cases(24),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        source_file: Some(file!()),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = prop::collection::vec((write(), any::<prop::sample::Index>()), 1..25);
    let result = runner.run(&strategy, |steps| {
        let (writes, picks): (Vec<Write>, Vec<prop::sample::Index>) = steps.into_iter().unzip();
        shared().runtime.block_on(async {
            let world = World::new(&shared().db).await;
            let auth = world.auth(Who::Owner);
            let pg: &PgStore = &shared().pg;
            check_store(pg, &auth, world.project, &writes, &picks).await?;
            let model: &MemStore = &world.model;
            check_store(model, &auth, world.project, &writes, &picks).await
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

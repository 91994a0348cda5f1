//! `bulk_upsert_project_files`: all or nothing, one seq, one `bulk:apply` (plan 1.4, 3.1).

use crate::fixture;
use fsync_protocol::content_hash;
use serde_json::json;

#[tokio::test]
async fn a_bulk_writes_every_file_under_one_seq_and_one_event() {
    let f = fixture().await;
    f.upsert("old.txt", "old", None).await;
    f.upsert("keep.txt", "keep", None).await;
    let (status, body) = f
        .bulk(json!([
            {"file_path": "src/a.ts", "file_type": "typescript", "content": "a"},
            {"file_path": "src/b.ts", "file_type": "typescript", "content": "b", "expected_version": 0},
            {"file_path": "old.txt", "delete": true, "expected_version": 1},
            {"file_path": "keep.txt", "file_type": "text", "content": "keep"},
        ]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["seq"], 3);
    assert_eq!(
        body["files"],
        json!([
            {"file_path": "src/a.ts", "version": 1, "content_hash": content_hash("a"), "deleted": false, "noop": false},
            {"file_path": "src/b.ts", "version": 1, "content_hash": content_hash("b"), "deleted": false, "noop": false},
            {"file_path": "old.txt", "version": 2, "content_hash": null, "deleted": true, "noop": false},
            {"file_path": "keep.txt", "version": 1, "content_hash": content_hash("keep"), "deleted": false, "noop": true},
        ])
    );
    let client = f.app.db.connect().await.unwrap();
    let seqs: Vec<i64> = client
        .query("SELECT DISTINCT seq FROM public.project_files WHERE project_id = $1 AND seq > 2", &[&f.project])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, vec![3], "every row of the bulk carries the bulk's one seq");

    let events = f.events().await;
    let bulk_events: Vec<_> = events.iter().filter(|(e, _)| e == "bulk:apply").collect();
    assert_eq!(bulk_events.len(), 1, "one broadcast per bulk");
    assert_eq!(bulk_events[0].1["seq"], 3);
    assert_eq!(bulk_events[0].1["files"].as_array().unwrap().len(), 3, "no-op entries are not in the event");
}

#[tokio::test]
async fn one_invalid_entry_writes_nothing_and_takes_no_seq() {
    let f = fixture().await;
    f.upsert("exists.txt", "v1", None).await;
    let rows_before = f.row_count().await;
    let events_before = f.events().await.len();
    let good = json!({"file_path": "fine.txt", "file_type": "text", "content": "fine"});
    let cases = [
        (json!({"file_path": "../escape", "file_type": "text", "content": "x"}), 400),
        (json!({"file_path": "x.bin", "file_type": "exe", "content": "x"}), 400),
        (json!({"file_path": "x.txt", "file_type": "text"}), 400),
        (json!({"file_path": "x.txt", "file_type": "text", "content": "x", "colour": "red"}), 400),
        (json!({"file_path": "x.txt", "file_type": "text", "content": "x", "expected_version": "one"}), 400),
        (json!({"file_path": "x.txt", "file_type": "text", "content": "x", "delete": "yes"}), 400),
        (json!({"file_path": "exists.txt", "file_type": "text", "content": "v2", "expected_version": 5}), 409),
        (json!({"file_path": "never.txt", "delete": true}), 404),
        (
            json!({"file_path": "huge.txt", "file_type": "text", "content": "x".repeat(fsync_protocol::limits::MAX_CONTENT_BYTES + 1)}),
            413,
        ),
        (json!("not an object"), 400),
    ];
    for (bad, want) in cases {
        let (status, body) = f.bulk(json!([good, bad])).await;
        assert_eq!(status.as_u16(), want, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().len() > 5, "a clear message: {body}");
    }
    assert_eq!(f.row_count().await, rows_before, "nothing written");
    assert_eq!(f.seq().await, 1, "seq unchanged");
    assert_eq!(f.events().await.len(), events_before, "nothing sent");
}

#[tokio::test]
async fn duplicate_paths_and_empty_or_non_array_bulks_are_refused() {
    let f = fixture().await;
    let entry = json!({"file_path": "a.txt", "file_type": "text", "content": "a"});
    let (status, body) = f.bulk(json!([entry, entry])).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("appears more than once"), "{body}");
    let (status, _) = f.bulk(json!([])).await;
    assert_eq!(status, 400);
    let (status, _) = f.bulk(json!({"file_path": "a.txt"})).await;
    assert_eq!(status, 400);
    assert_eq!(f.row_count().await, 0);
}

#[tokio::test]
async fn a_bulk_of_noops_takes_no_seq_and_sends_nothing() {
    let f = fixture().await;
    f.upsert("a.txt", "a", None).await;
    let (status, body) = f.bulk(json!([{"file_path": "a.txt", "file_type": "text", "content": "a"}])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["seq"], 1);
    assert_eq!(body["files"][0]["noop"], true);
    assert_eq!(f.events().await.len(), 1);
}

#[tokio::test]
async fn a_large_bulk_writes_everything_and_leaves_the_long_file_list_out_of_its_event() {
    let f = fixture().await;
    const FILES: usize = 2_000;
    let files: Vec<serde_json::Value> = (0..FILES)
        .map(|i| json!({"file_path": format!("src/gen/file_{i:05}.ts"), "file_type": "typescript", "content": format!("export const n = {i};\n").repeat(20)}))
        .collect();
    let (status, body) = f.bulk(json!(files)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["seq"], 1);
    assert_eq!(body["files"].as_array().unwrap().len(), FILES);
    assert_eq!(f.row_count().await, FILES as i64);
    let events = f.events().await;
    assert_eq!(events.len(), 1);
    let (event, payload) = &events[0];
    assert_eq!(event, "bulk:apply");
    assert_eq!((payload["files_omitted"].as_bool(), payload["files"].as_array().map(Vec::len)), (Some(true), Some(0)));
    // A second run of the same files is all no-ops: one pass of reads, no writes.
    let (status, body) = f.bulk(json!(files)).await;
    assert_eq!(status, 200);
    assert!(body["files"].as_array().unwrap().iter().all(|f| f["noop"] == true));
}

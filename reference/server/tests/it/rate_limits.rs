//! The write rate limit (`0006_rate_limits.sql`): a member's flood of writes to one project is
//! throttled with 429 `PT429` and a retry hint, a throttled write changes nothing, and every
//! acknowledged write is in the database; the service role is exempt, and each member and project
//! has a bucket of its own. The Rust client, backing off on the hints, gets every write through.

use crate::{fixture, Fixture};
use fsync_client::{ClientConfig, FsyncClient, RetryPolicy};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One upsert as `token`, no retry: the status, the body and the `Retry-After` header.
async fn upsert(f: &Fixture, token: &str, project: uuid::Uuid, path: &str) -> (u16, Value, Option<String>) {
    let args = json!({"project_uuid": project, "p_file_path": path, "p_content": path, "p_file_type": "text"});
    let answer = f
        .app
        .api()
        .request(
            axum::http::Method::POST,
            "/rest/v1/rpc/upsert_project_file",
            Some(token),
            &[("content-type", "application/json")],
            args.to_string(),
        )
        .await
        .unwrap();
    let retry_after = answer.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (answer.status, serde_json::from_slice(&answer.bytes).unwrap(), retry_after)
}

/// The live paths of the project and their versions, read as the superuser.
async fn files(f: &Fixture) -> BTreeMap<String, i32> {
    let client = f.app.db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT file_path, version FROM public.project_files
             WHERE project_id = $1 AND is_current_version AND NOT is_deleted",
            &[&f.project],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test]
async fn a_flood_from_one_member_is_throttled_and_no_acknowledged_write_is_lost() {
    let f = Arc::new(fixture().await);
    f.set_write_limit(20.0, 10.0).await;
    // Four writers, 50 writes each, as fast as the server answers.
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..50 {
                let path = format!("flood/{writer}-{i}.txt");
                answers.push((path.clone(), upsert(&f, &f.owner_token, f.project, &path).await));
            }
            answers
        }));
    }
    let (mut accepted, mut throttled) = (BTreeMap::new(), 0);
    for task in tasks {
        for (path, (status, body, retry_after)) in task.await.unwrap() {
            match status {
                200 => {
                    accepted.insert(path, body["version"].as_i64().unwrap() as i32);
                }
                429 => {
                    throttled += 1;
                    assert_eq!(body["code"], "PT429", "{body}");
                    assert!(body["message"].as_str().unwrap().contains("at most 10 a second"), "{body}");
                    let details: Value = serde_json::from_str(body["details"].as_str().unwrap()).unwrap();
                    let wait = details["retry_after_ms"].as_u64().unwrap();
                    assert!((1..=100).contains(&wait), "one token takes at most 100 ms at 10/s: {wait}");
                    assert_eq!(body["hint"], format!("retry after {wait} ms"));
                    assert_eq!(retry_after.as_deref(), Some("1"), "whole seconds, rounded up");
                }
                other => panic!("{path}: unexpected {other}: {body}"),
            }
        }
    }
    println!("flood: offered 200, accepted {}, throttled {throttled}", accepted.len());
    assert_eq!(accepted.len() + throttled, 200);
    assert!(throttled > 0, "the flood was throttled");
    assert!(accepted.len() >= 20, "the burst went through: {}", accepted.len());
    // Acknowledged: exactly what the database holds; throttled: nothing of it, not even a seq.
    assert_eq!(files(&f).await, accepted, "every acknowledged write is there, and nothing else");
    assert_eq!(f.seq().await, accepted.len() as i64, "a throttled write took no seq");
}

#[tokio::test]
async fn the_service_role_is_exempt_and_each_member_and_project_has_its_own_bucket() {
    let f = fixture().await;
    f.set_write_limit(2.0, 0.001).await;
    for i in 0..2 {
        assert_eq!(upsert(&f, &f.owner_token, f.project, &format!("owner/{i}")).await.0, 200);
    }
    assert_eq!(upsert(&f, &f.owner_token, f.project, "owner/2").await.0, 429, "the owner's bucket is empty");

    // Another member of the same project has a full bucket.
    let editor = f.app.create_user().await;
    f.app.add_member(f.owner, f.project, editor, "editor").await;
    let editor_token = f.app.user_token(editor);
    assert_eq!(upsert(&f, &editor_token, f.project, "editor/0").await.0, 200);
    // So does the owner in another project.
    let other = f.app.create_project(f.owner).await;
    assert_eq!(upsert(&f, &f.owner_token, other, "other/0").await.0, 200);
    // The service role is not limited at all.
    for i in 0..10 {
        assert_eq!(upsert(&f, &f.app.service_key, f.project, &format!("service/{i}")).await.0, 200);
    }
    // Without the limit's row, nobody is limited.
    let client = f.app.db.connect().await.unwrap();
    client.execute("DELETE FROM fsync.rate_limits WHERE name = 'writes'", &[]).await.unwrap();
    assert_eq!(upsert(&f, &f.owner_token, f.project, "owner/2").await.0, 200);
}

/// A caller out of tokens is refused at once, even while the project's other writers hold its
/// lock: it takes its token before the project lock, not behind everyone else.
#[tokio::test]
async fn a_throttled_write_is_refused_without_waiting_for_the_project_lock() {
    let f = fixture().await;
    f.set_write_limit(1.0, 0.001).await;
    assert_eq!(upsert(&f, &f.owner_token, f.project, "first").await.0, 200);

    // Another writer holds the project's lock (as a write in progress does) until told.
    let mut holder = f.app.db.connect().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM public.projects WHERE id = $1 FOR UPDATE", &[&f.project]).await.unwrap();
    let throttled = tokio::time::timeout(Duration::from_secs(30), upsert(&f, &f.owner_token, f.project, "second"))
        .await
        .expect("the throttled write waited behind the project lock");
    assert_eq!(throttled.0, 429, "{}", throttled.1);
    tx.rollback().await.unwrap();
    assert_eq!(files(&f).await.into_keys().collect::<Vec<_>>(), ["first"]);
}

#[tokio::test]
async fn the_client_backs_off_on_the_hints_and_gets_every_write_through() {
    let f = fixture().await;
    f.set_write_limit(5.0, 20.0).await;
    let retry = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(200),
        seed: Some(1),
    };
    let config = ClientConfig::new(&f.app.url, &f.app.anon_key).token(&f.owner_token).retry(retry);
    let client = FsyncClient::new(config).unwrap();
    // One editor saving 40 times as fast as it can: each throttled save waits for the hint
    // (plus jitter) and goes through.
    let started = fsync_testkit::now();
    let mut acknowledged = BTreeMap::new();
    for i in 0..40 {
        let path = format!("client/{i}.txt");
        let written = client.upsert_project_file(f.project, &path, &path, "text", None).await.unwrap();
        acknowledged.insert(path, written.version);
    }
    assert_eq!(files(&f).await, acknowledged, "every write was acknowledged and is there");
    // The bucket let 5 through at once and 20 a second after: the other 35 waited their turn.
    let took = fsync_testkit::now().duration_since(started);
    assert!(took >= Duration::from_millis(1_700), "40 writes in {took:?}: the limit held them back");
}

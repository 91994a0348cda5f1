//! Compare-and-set under contention (DESIGN §10 invariants 3-5): of concurrent writers with the
//! same expected_version exactly one wins, and versions and seq stay gapless.

use crate::fixture;
use std::sync::Arc;

const WRITERS: usize = 16;
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_with_the_same_expected_version_exactly_one_wins() {
    let f = Arc::new(fixture().await);
    f.upsert("race.txt", "start", None).await;
    for round in 0..ROUNDS {
        // Every round starts from the version the previous round's winner made.
        let expected = round as i64 + 1;
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                // Every writer writes different content, so none of them is a no-op.
                f.upsert("race.txt", &format!("round {round} writer {writer}"), Some(expected)).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status.as_u16() {
                200 => {
                    winners += 1;
                    assert_eq!(body["version"], expected + 1, "{body}");
                }
                409 => {
                    let details: serde_json::Value = serde_json::from_str(body["details"].as_str().unwrap()).unwrap();
                    assert_eq!(details["current_version"], expected + 1, "losers see the winner's version");
                }
                other => panic!("round {round}: unexpected status {other}: {body}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one writer wins");
    }

    // The history: versions 1..=ROUNDS+1 with no gap, one head, seq 1..=ROUNDS+1 in version order.
    let client = f.app.db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT version, seq, is_current_version FROM public.project_files
             WHERE project_id = $1 AND file_path = 'race.txt' ORDER BY version",
            &[&f.project],
        )
        .await
        .unwrap();
    let history: Vec<(i32, i64, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let want: Vec<(i32, i64, bool)> =
        (1..=(ROUNDS as i32 + 1)).map(|v| (v, v as i64, v == ROUNDS as i32 + 1)).collect();
    assert_eq!(history, want);
    assert_eq!(f.seq().await, ROUNDS as i64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_different_paths_get_a_gapless_seq() {
    let f = Arc::new(fixture().await);
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let (status, body) = f.upsert(&format!("w{writer}.txt"), &format!("{i}"), None).await;
                assert_eq!(status, 200, "{body}");
                seqs.push(body["seq"].as_i64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one writer's seqs increase: {seqs:?}");
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (1..=80).collect::<Vec<i64>>(), "every seq used exactly once");
    let events = f.events().await;
    let event_seqs: Vec<i64> = events.iter().map(|(_, p)| p["seq"].as_i64().unwrap()).collect();
    assert_eq!(event_seqs, (1..=80).collect::<Vec<i64>>());
}

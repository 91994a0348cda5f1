//! `GET /metrics` (DESIGN §12): only the service role scrapes, and a scrape shows what the
//! instance did — RPCs by function and status, throttled writes, open sockets, joins by outcome,
//! and each event's commit → delivered lag.

use crate::fixture;
use crate::realtime::{connect, join, next_broadcast, topic};
use fsync_protocol::realtime::Vsn;
use fsync_testkit::metric;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn only_the_service_role_scrapes() {
    let f = fixture().await;
    let api = f.app.api();
    let get = |token: Option<String>| {
        let api = api.clone();
        async move {
            api.request(axum::http::Method::GET, "/metrics", token.as_deref(), &[], Vec::<u8>::new()).await.unwrap()
        }
    };
    assert_eq!(get(None).await.status, 403, "the anon key");
    assert_eq!(get(Some(f.owner_token.clone())).await.status, 403, "a member");
    let keyless = api.send(axum::http::Method::GET, "/metrics", &[], Vec::<u8>::new()).await.unwrap();
    assert_eq!(keyless.status, 401, "no key");
    let scraped = get(Some(f.app.service_key.clone())).await;
    assert_eq!(scraped.status, 200);
    assert_eq!(scraped.headers["content-type"], "text/plain; version=0.0.4");

    // As Prometheus scrapes: a Bearer token and no apikey. The service role's key only.
    let bearer_only = |token: String| {
        let api = api.clone();
        async move {
            let authorization = [("authorization", format!("Bearer {token}"))];
            let headers: Vec<(&str, &str)> = authorization.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.send(axum::http::Method::GET, "/metrics", &headers, Vec::<u8>::new()).await.unwrap()
        }
    };
    let scraped = bearer_only(f.app.service_key.clone()).await;
    assert_eq!(scraped.status, 200, "the service-role key as a Bearer token alone");
    let text = String::from_utf8_lossy(&scraped.bytes);
    assert!(text.contains("fsync_websocket_connections"), "{text}");
    assert_eq!(bearer_only(f.app.anon_key.clone()).await.status, 403, "the anon key as a Bearer token");
    assert_eq!(bearer_only(f.owner_token.clone()).await.status, 403, "a member's token");
    assert_eq!(bearer_only("not-a-token".into()).await.status, 401, "a forged token");
}

#[tokio::test]
async fn a_scrape_shows_rpcs_throttling_sockets_joins_and_delivery_lag() {
    let f = fixture().await;
    let mut socket = connect(&f.app, Vsn::V2).await;
    let (_, joined) = join(&mut socket, &topic(f.project), &f.owner_token, true).await;
    assert_eq!(joined["status"], "ok", "{joined}");
    let stranger = f.app.user_token(f.app.create_user().await);
    let (_, refused) = join(&mut socket, &topic(f.project), &stranger, true).await;
    assert_eq!(refused["status"], "error", "{refused}");

    assert_eq!(f.upsert("a.txt", "one", None).await.0, 200);
    assert!(next_broadcast(&mut socket, Duration::from_secs(5)).await.is_some(), "the event arrives");
    f.set_write_limit(1.0, 0.001).await;
    assert_eq!(f.upsert("b.txt", "two", None).await.0, 200);
    assert_eq!(f.upsert("c.txt", "three", None).await.0, 429);
    let listed = f.app.rpc(Some(&f.owner_token), "list_current_files", json!({"project_uuid": f.project})).await;
    assert_eq!(listed.0, 200);

    // The lag is recorded just after the fan-out, so wait for it.
    let delivered = "fsync_event_lag_seconds_count{stage=\"delivered\"}";
    assert_eq!(f.app.metric_reaches(delivered, 2.0).await, 2.0, "both events' lags");
    let text = f.app.scrape().await;
    let value = |series: &str| metric(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
    let upserts = "fsync_rpc_duration_seconds_count{function=\"upsert_project_file\",outcome=\"200\"}";
    assert_eq!(value(upserts), 2.0);
    assert_eq!(value("fsync_rpc_duration_seconds_count{function=\"upsert_project_file\",outcome=\"429\"}"), 1.0);
    assert_eq!(value("fsync_rpc_duration_seconds_count{function=\"list_current_files\",outcome=\"200\"}"), 1.0);
    assert_eq!(value("fsync_rate_limited_total{surface=\"rpc\"}"), 1.0);
    assert_eq!(value("fsync_websocket_connections"), 1.0);
    assert_eq!(value("fsync_channel_joins_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(value("fsync_channel_joins_total{outcome=\"denied\"}"), 1.0);
    // On one machine, commit → delivered is well under a second.
    assert_eq!(value("fsync_event_lag_seconds_bucket{stage=\"delivered\",le=\"1\"}"), 2.0, "{text}");

    drop(socket);
    let deadline = fsync_testkit::now() + Duration::from_secs(10);
    while metric(&f.app.scrape().await, "fsync_websocket_connections") != Some(0.0) {
        assert!(fsync_testkit::now() < deadline, "the closed socket is no longer counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real Prometheus scrapes `/metrics` as it scrapes anything, with the service-role key as its
/// Bearer token (it sends no other header): the target is up and the instance's series are
/// queryable; the same scrape with the anon key is refused (the target is down).
#[tokio::test]
async fn a_real_prometheus_scrapes_with_the_service_role_key_as_its_bearer_token() {
    use fsync_testkit::prometheus::{self, Job, Prometheus};
    if prometheus::available("a real Prometheus scraping /metrics").is_none() {
        return;
    }
    let f = fixture().await;
    let target = f.app.addr.to_string();
    let job =
        |name: &str, bearer: &str| Job { name: name.into(), targets: vec![target.clone()], bearer: bearer.into() };
    let jobs = [job("fsync", &f.app.service_key), job("anon", &f.app.anon_key)];
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/prometheus/rules.yml");
    let prometheus = Prometheus::start(&jobs, Duration::from_millis(500), &[&rules]).await.expect("Prometheus starts");
    let within = Duration::from_secs(30);
    prometheus.until(r#"up{job="fsync"}"#, |up| up == 1.0, within).await.expect("the service role's scrape");
    // An RPC after the first scrape: its labelled series appears, and counts it.
    f.app.rpc(Some(&f.owner_token), "list_current_files", json!({"project_uuid": f.project})).await;
    let rpcs = r#"fsync_rpc_duration_seconds_count{job="fsync",function="list_current_files"}"#;
    prometheus.until(rpcs, |count| count >= 1.0, within).await.expect("the RPC's series");
    prometheus.until(r#"up{job="anon"}"#, |up| up == 0.0, within).await.expect("the anon key's scrape is refused");
    // ops/prometheus's recording rules evaluate over what it scraped: with calls going on (a
    // rate needs two samples that differ), no call failed.
    let calls = {
        let (api, token, project) = (f.app.api(), f.owner_token.clone(), f.project);
        tokio::spawn(async move {
            for _ in 0..300 {
                let _ = api.rpc(Some(&token), "list_current_files", json!({"project_uuid": project})).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let ratio = r#"fsync:rpc_error_ratio{function="list_current_files"}"#;
    prometheus.until(ratio, |ratio| ratio == 0.0, within).await.expect("the RPC error ratio, recorded");
    calls.abort();
    prometheus.until("fsync:websocket_connections", |n| n >= 0.0, within).await.expect("the sockets, recorded");
    prometheus.stop().await;
}

/// `ops/prometheus/rules.yml` checks, and its unit tests (`tests.yml`: each alert fires when its
/// budget is missed for its `for`, and not before; the recorded figures' values) pass; the
/// example `prometheus.yml` checks once its key file exists.
#[test]
fn the_prometheus_rules_check_and_their_unit_tests_pass() {
    if fsync_testkit::prometheus::available("promtool on ops/prometheus").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/prometheus");
    let promtool = |args: [&str; 3], dir: &std::path::Path| {
        let out = std::process::Command::new("promtool").args(args).current_dir(dir).output().expect("run promtool");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {}: {said}", args.join(" "));
    };
    promtool(["check", "rules", "rules.yml"], &dir);
    promtool(["test", "rules", "tests.yml"], &dir);
    let deployed = tempfile::tempdir().unwrap();
    for file in ["prometheus.yml", "rules.yml"] {
        std::fs::copy(dir.join(file), deployed.path().join(file)).unwrap();
    }
    std::fs::write(deployed.path().join("fsync-service-role.key"), "the service-role key").unwrap();
    promtool(["check", "config", "prometheus.yml"], deployed.path());
}

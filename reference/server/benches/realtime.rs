//! Realtime figures (issue: Realtime), measured against the release `fsync-reference` binary
//! running as its own process on a fresh database:
//!
//! - commit → delivered on a WebSocket (p50/p99), beside PostgreSQL's own commit → LISTEN
//!   latency measured in the same run (the floor);
//! - edit RPC sent → delivered (p50/p99);
//! - one event fanned out to 1,000 joined sockets (time until the last one has it);
//! - server memory per idle joined socket.
//!
//! Run: `cargo bench -p fsync-reference --bench realtime` (needs PostgreSQL, like the tests).
//! `FSYNC_BENCH_SAMPLES` (default 300) and `FSYNC_BENCH_SOCKETS` (default 1000) scale it.
#![allow(clippy::disallowed_methods)] // a benchmark measures the real clock

use fsync_client::realtime::RealtimeSocket;
use fsync_client::{Api, Transport};
use fsync_protocol::realtime::Vsn;
use fsync_testkit::TestDb;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, NoTls};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples_ms: Vec<f64>) -> (f64, f64) {
    samples_ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p95, p99) = (percentile(&samples_ms, 50.0), percentile(&samples_ms, 95.0), percentile(&samples_ms, 99.0));
    println!("{name:<44} n={:<5} p50={p50:>8.3} ms  p95={p95:>8.3} ms  p99={p99:>8.3} ms", samples_ms.len());
    (p50, p99)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Server {
    child: Child,
    url: String,
    anon: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(db: &TestDb) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsync-reference"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fsync-reference");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut anon) = (None, None);
    while url.is_none() || anon.is_none() {
        let line = lines.next().expect("server output").expect("read server output");
        if let Some(u) = line.strip_prefix("API URL: ") {
            url = Some(u.to_owned());
        }
        if let Some(k) = line.strip_prefix("anon key: ") {
            anon = Some(k.to_owned());
        }
    }
    // Keep draining what the server prints.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url: url.unwrap(), anon: anon.unwrap() }
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn wait_broadcast(socket: &mut RealtimeSocket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.recv())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        if frame.event == "broadcast" {
            return frame.payload;
        }
    }
}

async fn join(socket: &mut RealtimeSocket, topic: &str, token: &str) {
    let payload = json!({"config": {"private": true, "broadcast": {"self": false}}, "access_token": token});
    let join_ref = socket.push_join(topic, payload).await.unwrap();
    let (reply, _) = socket.await_reply(&join_ref).await.unwrap();
    assert_eq!(reply.payload["status"], "ok", "{}", reply.payload);
}

#[tokio::main]
async fn main() {
    let samples = env_usize("FSYNC_BENCH_SAMPLES", 300);
    let sockets = env_usize("FSYNC_BENCH_SOCKETS", 1000);
    let db = TestDb::migrated().await.expect("a database");
    let server = start_server(&db);
    let secret = fsync_protocol::jwt::Secret::new(fsync_reference::config::DEV_JWT_SECRET);

    // One owner, one project.
    let owner = uuid::Uuid::new_v4();
    let admin = pg(&db.url).await;
    admin.execute("INSERT INTO public.user_profiles (id) VALUES ($1)", &[&owner]).await.unwrap();
    let project: uuid::Uuid = admin
        .query_one("INSERT INTO public.projects (name, owner_id) VALUES ('bench', $1) RETURNING id", &[&owner])
        .await
        .unwrap()
        .get(0);
    let mut claims = fsync_protocol::jwt::claims_for("authenticated", fsync_store::Sources::system().wall_s(), 3600);
    claims.insert("sub".into(), json!(owner));
    let token = fsync_protocol::jwt::sign(&secret, &claims);
    let topic = format!("realtime:project:{project}");
    let claims_json = json!({"role": "authenticated", "sub": owner}).to_string();

    println!("fsync realtime bench: {samples} samples, {sockets} sockets, server pid {}", server.child.id());

    // Floor: PostgreSQL commit → LISTEN, on the same database.
    let (listener, mut connection) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (notify_tx, mut notify_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = notify_tx.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN fsync_bench").await.unwrap();
    let mut writer = pg(&db.url).await;
    let mut floor = Vec::new();
    for i in 0..samples {
        let tx = writer.transaction().await.unwrap();
        tx.execute("SELECT pg_notify('fsync_bench', $1)", &[&i.to_string()]).await.unwrap();
        let t0 = Instant::now();
        tx.commit().await.unwrap();
        notify_rx.recv().await.unwrap();
        floor.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (floor_p50, _) = summary("postgres commit -> LISTEN (floor)", floor);

    // Commit → delivered: the same measurement through upsert_project_file and the server.
    let mut socket = RealtimeSocket::connect(&server.url, &server.anon, Vsn::V2).await.unwrap();
    join(&mut socket, &topic, &token).await;
    let mut delivered = Vec::new();
    for i in 0..samples {
        let tx = writer.transaction().await.unwrap();
        tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims_json]).await.unwrap();
        tx.execute(
            "SELECT public.upsert_project_file($1, 'bench.ts', $2, 'typescript')",
            &[&project, &format!("// {i}")],
        )
        .await
        .unwrap();
        let t0 = Instant::now();
        tx.commit().await.unwrap();
        let payload = wait_broadcast(&mut socket).await;
        delivered.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(payload["payload"]["content"], format!("// {i}"));
    }
    let (delivered_p50, _) = summary("commit -> delivered on a websocket", delivered);
    println!("{:<44} {:.2}x the floor", "delivered p50 / floor p50", delivered_p50 / floor_p50);

    // Edit RPC sent → delivered.
    let api = Api::new(&server.url, &server.anon, Transport::tcp());
    let mut rpc = Vec::new();
    for i in 0..samples {
        let t0 = Instant::now();
        let args = json!({"project_uuid": project, "p_file_path": "rpc.ts", "p_content": format!("// rpc {i}"), "p_file_type": "typescript"});
        let reply = api.rpc(Some(&token), "upsert_project_file", args).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        wait_broadcast(&mut socket).await;
        rpc.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    summary("edit rpc sent -> delivered", rpc);

    // Fan-out and memory per idle socket.
    let rss_before = rss_kib(server.child.id());
    let mut fleet = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let mut s = RealtimeSocket::connect(&server.url, &server.anon, Vsn::V2).await.unwrap();
        join(&mut s, &topic, &token).await;
        fleet.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(server.child.id());
    println!(
        "{:<44} {:.1} KiB ({} sockets: server RSS {} -> {} KiB)",
        "server memory per idle joined socket",
        (rss_after.saturating_sub(rss_before)) as f64 / sockets as f64,
        sockets,
        rss_before,
        rss_after
    );

    let rounds = 20;
    let mut fanout = Vec::new();
    for i in 0..rounds {
        let mut waiting = Vec::with_capacity(sockets);
        for mut s in fleet.drain(..) {
            waiting.push(tokio::spawn(async move {
                wait_broadcast(&mut s).await;
                (Instant::now(), s)
            }));
        }
        let tx = writer.transaction().await.unwrap();
        tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims_json]).await.unwrap();
        tx.execute(
            "SELECT public.upsert_project_file($1, 'fan.ts', $2, 'typescript')",
            &[&project, &format!("// fan {i}")],
        )
        .await
        .unwrap();
        let t0 = Instant::now();
        tx.commit().await.unwrap();
        let mut last = t0;
        for task in waiting {
            let (at, s) = task.await.unwrap();
            last = last.max(at);
            fleet.push(s);
        }
        // The single subscriber from before also gets it.
        wait_broadcast(&mut socket).await;
        fanout.push((last - t0).as_secs_f64() * 1e3);
    }
    summary(&format!("commit -> delivered to all {sockets} sockets"), fanout);
    drop(server);
}

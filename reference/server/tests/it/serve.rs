//! The `fsync-reference` binary as the README runs it, and the database bootstrap behind it.

use fsync_client::{Api, Transport};
use fsync_reference::pg::bootstrap::{self, PrivateCluster};
use fsync_testkit::admin_url;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A database URL on the machine's server for a database that does not exist yet.
fn missing_database_url() -> (String, String) {
    let name = format!("fsync_test_{}", fsync_testkit::new_id().simple());
    let admin = admin_url();
    let base = &admin[..admin.rfind('/').expect("admin URL has a database")];
    (format!("{base}/{name}"), name)
}

async fn drop_database(name: &str) {
    let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
}

/// Starts `fsync-reference serve` on `url` and returns it with the lines it printed.
fn start_serve(url: &str) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsync-reference"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("DATABASE_URL", url)
        .env_remove("FSYNC_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fsync-reference serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while printed.len() < 5 {
        match lines.next() {
            Some(Ok(line)) => printed.push(line),
            _ => break,
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, printed)
}

fn printed_value(printed: &[String], prefix: &str) -> String {
    printed
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no {prefix:?} in {printed:?}"))
}

#[tokio::test]
async fn two_server_processes_on_one_database_deliver_each_others_writes() {
    use fsync_client::realtime::RealtimeSocket;
    use fsync_protocol::realtime::Vsn;
    let db = fsync_testkit::TestDb::migrated().await.unwrap();
    let (mut first, printed_first) = start_serve(&db.url);
    let (mut second, printed_second) = start_serve(&db.url);
    let urls = [printed_value(&printed_first, "API URL: "), printed_value(&printed_second, "API URL: ")];
    let anon = printed_value(&printed_first, "anon key: ");

    let owner = fsync_testkit::new_id();
    let client = db.connect().await.unwrap();
    client.execute("INSERT INTO public.user_profiles (id) VALUES ($1)", &[&owner]).await.unwrap();
    let project: uuid::Uuid = client
        .query_one("INSERT INTO public.projects (name, owner_id) VALUES ('p', $1) RETURNING id", &[&owner])
        .await
        .unwrap()
        .get(0);
    let secret = fsync_protocol::jwt::Secret::new(fsync_reference::config::DEV_JWT_SECRET);
    let mut claims = fsync_protocol::jwt::claims_for("authenticated", fsync_testkit::now_s(), 600);
    claims.insert("sub".into(), serde_json::json!(owner));
    let token = fsync_protocol::jwt::sign(&secret, &claims);
    let topic = format!("realtime:project:{project}");

    let mut sockets = Vec::new();
    for url in &urls {
        let mut socket = RealtimeSocket::connect(url, &anon, Vsn::V2).await.unwrap();
        let join_ref = socket
            .push_join(&topic, serde_json::json!({"config": {"private": true}, "access_token": token}))
            .await
            .unwrap();
        let (reply, _) = socket.await_reply(&join_ref).await.unwrap();
        assert_eq!(reply.payload["status"], "ok");
        sockets.push(socket);
    }
    for (seq, url) in urls.iter().enumerate() {
        let api = Api::new(url, &anon, Transport::tcp());
        let args = serde_json::json!({"project_uuid": project, "p_file_path": "a.txt", "p_content": url, "p_file_type": "text"});
        let reply = api.rpc(Some(&token), "upsert_project_file", args).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        for socket in &mut sockets {
            let frame = loop {
                let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                if frame.event == "broadcast" {
                    break frame;
                }
            };
            assert_eq!(frame.payload["payload"]["seq"], seq as i64 + 1, "a write through either process reaches both");
        }
    }
    for child in [&mut first, &mut second] {
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        assert!(child.wait().unwrap().success());
    }
}

#[tokio::test]
async fn serve_creates_its_database_migrates_and_prints_the_keys() {
    let (url, name) = missing_database_url();
    let (mut child, printed) = start_serve(&url);
    let find = |prefix: &str| printed.iter().find_map(|l| l.strip_prefix(prefix)).map(str::to_owned);
    let api = find("API URL: ").unwrap_or_else(|| panic!("no API URL line in {printed:?}"));
    let anon = find("anon key: ").expect("anon key line");
    let service = find("service_role key: ").expect("service_role key line");
    assert!(find("JWT secret: ").unwrap().contains("development default"));
    let secret = fsync_protocol::jwt::Secret::new(fsync_reference::config::DEV_JWT_SECRET);
    assert_eq!(fsync_protocol::jwt::verify(&secret, &anon, fsync_testkit::now_s()).unwrap()["role"], "anon");
    assert_eq!(fsync_protocol::jwt::verify(&secret, &service, fsync_testkit::now_s()).unwrap()["role"], "service_role");

    let health: serde_json::Value = reqwest::get(format!("{api}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let args = serde_json::json!({"project_uuid": fsync_testkit::new_id(), "since_seq": 0});
    let reply = Api::new(&api, &anon, Transport::tcp()).rpc(Some(&service), "list_changes_since", args).await.unwrap();
    assert_eq!(reply.status, 404, "the API is live and migrated");

    // SIGTERM stops it cleanly.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits 0 on SIGTERM: {status}");
    drop_database(&name).await;
}

#[tokio::test]
async fn token_mints_a_signed_jwt_with_extra_claims() {
    let output = Command::new(env!("CARGO_BIN_EXE_fsync-reference"))
        .args(["token", "--sub", "11111111-1111-1111-1111-111111111111", "--role", "authenticated", "--ttl", "60"])
        .args(["--claim", "scope=container", "--claim", "n=3"])
        .env_remove("FSYNC_JWT_SECRET")
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    let secret = fsync_protocol::jwt::Secret::new(fsync_reference::config::DEV_JWT_SECRET);
    let claims = fsync_protocol::jwt::verify(&secret, token.trim(), fsync_testkit::now_s()).unwrap();
    assert_eq!(claims["sub"], "11111111-1111-1111-1111-111111111111");
    assert_eq!(claims["scope"], "container");
    assert_eq!(claims["n"], 3);
    let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 60);

    let bad =
        Command::new(env!("CARGO_BIN_EXE_fsync-reference")).args(["token", "--claim", "novalue"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KEY=VALUE"));
}

#[tokio::test]
async fn resolve_creates_a_missing_database() {
    let (url, name) = missing_database_url();
    let database = bootstrap::resolve(Some(url.clone()), std::path::Path::new("/nonexistent")).await.unwrap();
    assert!(matches!(database.source, bootstrap::Source::Url));
    let (client, connection) =
        tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("the database exists now");
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
    drop(client);
    // A second resolve finds it and leaves it alone.
    bootstrap::resolve(Some(url), std::path::Path::new("/nonexistent")).await.unwrap();
    drop_database(&name).await;
}

#[tokio::test]
async fn a_private_cluster_starts_from_the_installed_binaries_and_stops_on_drop() {
    let dir = std::env::temp_dir().join(format!("fsync-private-{}", fsync_testkit::new_id().simple()));
    let cluster = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || PrivateCluster::start(&dir)
    })
    .await
    .unwrap()
    .expect("start a private cluster");
    let url = cluster.url("fsync");
    bootstrap::create_database_if_missing(&url).await.unwrap();
    let store = fsync_reference::PgStore::connect(&url).await.expect("migrate the private cluster");
    drop(store);
    let port = cluster.port;
    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the cluster stopped when dropped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve` with the Docker launcher refuses to listen, with the reason, when its settings or
/// its engine cannot give it one: no network named, an unknown launcher, an image that is not
/// there (or no engine at all), a token lifetime out of bounds.
#[tokio::test]
async fn serve_refuses_a_docker_launcher_it_cannot_have() {
    let (url, name) = missing_database_url();
    let refused = |env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_fsync-reference"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("DATABASE_URL", &url)
            .env("FSYNC_STATE_DIR", std::env::temp_dir().join(format!("fsync-serve-{name}")))
            .envs(env.iter().copied())
            .output()
            .expect("run serve");
        assert!(!output.status.success(), "serve refuses {env:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let no_network = refused(&[("FSYNC_AGENT_LAUNCHER", "docker"), ("FSYNC_PREVIEW_IMAGE", "fsync/preview:x")]);
    assert!(no_network.contains("needs FSYNC_PREVIEW_NETWORK"), "{no_network}");
    let unknown = refused(&[("FSYNC_AGENT_LAUNCHER", "vm")]);
    assert!(unknown.contains("`process` or `docker`, not `vm`"), "{unknown}");
    let missing = refused(&[
        ("FSYNC_AGENT_LAUNCHER", "docker"),
        ("FSYNC_PREVIEW_IMAGE", "fsync/no-such-image:0"),
        ("FSYNC_PREVIEW_NETWORK", "bridge"),
    ]);
    assert!(
        missing.contains("the preview image fsync/no-such-image:0 is not here")
            || missing.contains("no Docker engine answers"),
        "{missing}"
    );
    let ttl = refused(&[("FSYNC_CONTAINER_TOKEN_TTL_S", "3600")]);
    assert!(ttl.contains("FSYNC_CONTAINER_TOKEN_TTL_S is whole seconds from 1 to 900, not `3600`"), "{ttl}");
    drop_database(&name).await;
}

//! Bounds before work: a request that carries a body is refused before the body is read unless
//! its keys verify, and each route takes a body only up to its own content's limit.

use fsync_protocol::limits::{MAX_OBJECT_BYTES, MAX_REQUEST_BODY_BYTES, MAX_SMALL_BODY_BYTES};
use fsync_testkit::{spawn_app, AppOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an answer may take; a server that waited for the rest of the body would never
/// answer at all.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Sends the head of a request announcing `length` bytes of body and only 1 KiB of it, then
/// reads the answer's status line and body (the connection stays open: the rest never comes).
async fn announce(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], length: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("send the head");
    stream.write_all(&[b'{'; 1024]).await.expect("send the first KiB");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(ANSWER_WITHIN, stream.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer while the body is still coming"))
        .expect("read the answer");
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

const HUGE: usize = 100 * 1024 * 1024;

#[tokio::test]
async fn a_body_without_valid_keys_is_refused_before_it_is_read() {
    let app = spawn_app(AppOptions::default()).await;
    let routes = [
        ("POST", "/rest/v1/rpc/upsert_project_file".to_owned()),
        ("POST", "/storage/v1/object/project-files/p/a.png".to_owned()),
        ("PUT", "/storage/v1/object/project-files/p/a.png".to_owned()),
        ("POST", "/storage/v1/object/sign/project-files/p/a.png".to_owned()),
        ("POST", "/functions/v1/build-project-snapshot".to_owned()),
        ("POST", "/orchestrator/v1/sessions".to_owned()),
        ("POST", format!("/orchestrator/v1/sessions/{}/status", uuid::Uuid::nil())),
        ("POST", "/no/such/route".to_owned()),
    ];
    let forged = fsync_protocol::jwt::sign(&fsync_protocol::jwt::Secret::new("another secret"), &Default::default());
    let bearer = format!("Bearer {forged}");
    let key_sets: [&[(&str, &str)]; 3] =
        [&[], &[("apikey", "not a key")], &[("apikey", &app.anon_key), ("authorization", &bearer)]];
    for (method, path) in &routes {
        for keys in key_sets {
            let answer = announce(app.addr, method, path, keys, HUGE).await;
            assert!(answer.starts_with("HTTP/1.1 401"), "{method} {path} with {keys:?}: {answer}");
            if path.starts_with("/storage/") {
                assert!(answer.contains("\"statusCode\":\"401\""), "Storage's own error shape: {answer}");
            } else {
                assert!(answer.contains("PGRST301"), "{answer}");
            }
        }
    }
}

#[tokio::test]
async fn each_route_takes_a_body_only_up_to_its_own_limit() {
    let app = spawn_app(AppOptions::default()).await;
    let service = format!("Bearer {}", app.service_key);
    let keys: &[(&str, &str)] =
        &[("apikey", &app.service_key), ("authorization", &service), ("content-type", "application/json")];
    let small = MAX_SMALL_BODY_BYTES + 1;
    for (method, path, length) in [
        ("POST", "/functions/v1/build-project-snapshot".to_owned(), small),
        ("POST", "/orchestrator/v1/sessions".to_owned(), small),
        ("POST", format!("/orchestrator/v1/sessions/{}/status", uuid::Uuid::nil()), small),
        ("POST", "/storage/v1/object/sign/project-files/p/a.png".to_owned(), small),
        ("POST", "/storage/v1/object/project-files/p/a.png".to_owned(), MAX_OBJECT_BYTES + 1),
        ("POST", "/rest/v1/rpc/bulk_upsert_project_files".to_owned(), MAX_REQUEST_BODY_BYTES + 1),
    ] {
        let answer = announce(app.addr, method, &path, keys, length).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{method} {path} with {length} bytes: {answer}");
        let code = if path.starts_with("/storage/") { "EntityTooLarge" } else { "PGRST413" };
        assert!(answer.contains(code), "{answer}");
    }
}

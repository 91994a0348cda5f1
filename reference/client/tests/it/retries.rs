//! The retry policy against a scripted HTTP peer: network errors, 429 and 5xx are retried with
//! backoff; 409 and other 4xx are not.

use fsync_client::{ClientConfig, ClientError, FsyncClient, RetryPolicy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the peer does with one request.
#[derive(Clone, Copy)]
enum Step {
    /// Close the connection without answering.
    Drop,
    /// Answer with this status and a PostgREST-style body.
    Status(u16),
    /// Answer 200 with a valid `list_changes_since` body.
    Ok,
}

/// Serves `script` one step per request (the last step repeats) and counts requests.
async fn scripted_peer(script: Vec<Step>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let step = script[n.min(script.len() - 1)];
            // Read the request head and its body before answering.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(read) = socket.read(&mut chunk).await {
                if read == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let (status, body) = match step {
                Step::Drop => continue, // dropping the socket closes the connection unanswered
                Step::Status(s) => {
                    (s, format!(r#"{{"code":"T{s}","message":"scripted {s}","details":null,"hint":null}}"#))
                }
                Step::Ok => (200, r#"{"seq":7,"changes":[]}"#.to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, count)
}

fn client(url: &str, attempts: u32) -> FsyncClient {
    let retry = RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        seed: Some(1),
    };
    FsyncClient::new(ClientConfig::new(url, "key").retry(retry)).unwrap()
}

#[tokio::test]
async fn network_errors_429_and_5xx_are_retried_until_success() {
    let (url, count) =
        scripted_peer(vec![Step::Drop, Step::Status(503), Step::Status(429), Step::Status(500), Step::Ok]).await;
    let changes = client(&url, 5).list_changes_since(uuid::Uuid::nil(), 0).await.unwrap();
    assert_eq!(changes.seq, 7);
    assert_eq!(count.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn conflicts_and_other_4xx_are_never_retried() {
    for status in [409, 400, 401, 403, 404, 413] {
        let (url, count) = scripted_peer(vec![Step::Status(status), Step::Ok]).await;
        let err = client(&url, 5).list_changes_since(uuid::Uuid::nil(), 0).await.unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert_eq!(count.load(Ordering::SeqCst), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit() {
    let (url, count) = scripted_peer(vec![Step::Status(503)]).await;
    let err = client(&url, 3).list_changes_since(uuid::Uuid::nil(), 0).await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 503, .. }), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (url, count) = scripted_peer(vec![Step::Drop]).await;
    let err = client(&url, 4).list_changes_since(uuid::Uuid::nil(), 0).await.unwrap_err();
    assert!(matches!(err, ClientError::Network { attempts: 4, .. }), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

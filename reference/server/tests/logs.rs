//! Log lines name what they are about (issue 13, observability): a request's lines carry its
//! function and `project_id`, an event's its `project_id`, `event_type` and `seq`.
//!
//! A test binary of its own: it installs the process's subscriber, which no other test shares.

use fsync_client::realtime::RealtimeSocket;
use fsync_protocol::realtime::Vsn;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the captured lines go.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_and_event_lines_carry_their_function_project_event_type_and_seq() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");

    let app = fsync_testkit::spawn_app(Default::default()).await;
    let owner = app.create_user().await;
    let p = app.create_project(owner).await;
    let token = app.user_token(owner);
    let mut socket = RealtimeSocket::connect(&app.url, &app.anon_key, Vsn::V2).await.unwrap();
    let topic = format!("realtime:project:{p}");
    let join_ref = socket.push_join(&topic, json!({"config": {"private": true}, "access_token": token})).await.unwrap();
    let (reply, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.await_reply(&join_ref)).await.unwrap().unwrap();
    assert_eq!(reply.payload["status"], "ok", "{}", reply.payload);
    let write = |path: &str| json!({"project_uuid": p, "p_file_path": path, "p_content": "one", "p_file_type": "text"});
    assert_eq!(app.rpc(Some(&token), "upsert_project_file", write("a.txt")).await.0, 200);
    let broadcast = async {
        while let Ok(Some(frame)) = socket.recv().await {
            if frame.event == "broadcast" {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), broadcast).await.expect("the event arrives");
    assert_eq!(app.rpc(Some(&token), "upsert_project_file", write("../bad")).await.0, 400);

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let has = |parts: &[&str]| text.lines().any(|line| parts.iter().all(|part| line.contains(part)));
    let rpc = format!("rpc{{function=upsert_project_file project_id={p}}}");
    assert!(has(&[&rpc, "answered", "status=200"]), "an RPC's line names it and its project:\n{text}");
    assert!(has(&[&rpc, "answered", "status=400"]), "a refused one too:\n{text}");
    let event = format!("event{{project_id={p} event_type=file:update seq=1}}");
    assert!(has(&[&event, "delivered", "sockets=1"]), "an event's line names its project, type and seq:\n{text}");
}

//! Realtime over the real server and PostgreSQL (DESIGN §7, §8): the Phoenix protocol, private
//! channel authorization, delivery after commit in seq order across instances, token expiry
//! and refresh, malformed input, slow consumers, client broadcasts.

use crate::{fixture, Fixture};
use fsync_client::realtime::RealtimeSocket;
use fsync_protocol::realtime::{Frame, Vsn};
use fsync_reference::realtime::RealtimeConfig;
use fsync_testkit::{claims, spawn_app, AppOptions, TestApp};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn connect(app: &TestApp, vsn: Vsn) -> RealtimeSocket {
    RealtimeSocket::connect(&app.url, &app.anon_key, vsn).await.expect("connect to realtime")
}

pub(crate) fn topic(project: Uuid) -> String {
    format!("realtime:project:{project}")
}

fn join_payload(token: &str, private: bool) -> Value {
    json!({
        "config": {"broadcast": {"ack": true, "self": false}, "presence": {"key": "", "enabled": false},
                   "postgres_changes": [], "private": private},
        "access_token": token,
    })
}

/// Joins and returns (join_ref, reply payload).
pub(crate) async fn join(socket: &mut RealtimeSocket, topic: &str, token: &str, private: bool) -> (String, Value) {
    let join_ref = socket.push_join(topic, join_payload(token, private)).await.unwrap();
    let (reply, _) = tokio::time::timeout(WAIT, socket.await_reply(&join_ref)).await.expect("join reply").unwrap();
    (join_ref, reply.payload)
}

async fn joined(socket: &mut RealtimeSocket, topic: &str, token: &str) -> String {
    let (join_ref, reply) = join(socket, topic, token, true).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    join_ref
}

/// The next frame within `wait`, or `None`.
async fn next_frame(socket: &mut RealtimeSocket, wait: Duration) -> Option<Frame> {
    tokio::time::timeout(wait, socket.recv()).await.ok().and_then(|r| r.ok().flatten())
}

/// The next broadcast's (event, payload) within `wait`.
pub(crate) async fn next_broadcast(socket: &mut RealtimeSocket, wait: Duration) -> Option<(String, Value)> {
    let deadline = fsync_testkit::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(fsync_testkit::now());
        let frame = next_frame(socket, left).await?;
        if frame.event == "broadcast" {
            return Some((frame.payload["event"].as_str()?.to_owned(), frame.payload["payload"].clone()));
        }
    }
}

#[tokio::test]
async fn connect_errors_are_http_responses_worded_as_supabase_words_them() {
    let f = fixture().await;
    let base = f.app.url.replace("http://", "ws://");
    let cases = [
        (format!("{base}/realtime/v1/websocket?vsn=2.0.0"), 401, "API key is missing"),
        (format!("{base}/realtime/v1/websocket?apikey=nope&vsn=2.0.0"), 401, "The token provided is not a valid JWT"),
        (
            format!("{base}/realtime/v1/websocket?apikey={}&vsn=3.0.0", f.app.anon_key),
            400,
            "Unsupported vsn: use 1.0.0 or 2.0.0",
        ),
    ];
    for (url, status, message) in cases {
        match fsync_client::Transport::tcp().websocket(&url, None).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{url}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"], message);
            }
            other => panic!("{url}: expected an HTTP error, got {:?}", other.map(|_| ())),
        }
    }
    let expired = f.app.token(claims(json!({"role": "anon", "exp": fsync_testkit::now_s() - 1})));
    let err = RealtimeSocket::connect(&f.app.url, &expired, Vsn::V2).await.err().expect("refused");
    assert!(err.to_string().contains("Token has expired"), "{err}");
    let no_exp = fsync_protocol::jwt::sign(&f.app.secret, &claims(json!({"role": "anon"})));
    let err = RealtimeSocket::connect(&f.app.url, &no_exp, Vsn::V2).await.err().expect("refused");
    assert!(err.to_string().contains("Fields `role` and `exp` are required in JWT"), "{err}");
}

#[tokio::test]
async fn heartbeats_joins_and_leaves_in_both_serializations() {
    let f = fixture().await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let mut socket = connect(&f.app, vsn).await;
        let hb = socket.push_heartbeat().await.unwrap();
        let (reply, _) = socket.await_reply(&hb).await.unwrap();
        assert_eq!((reply.topic.as_str(), reply.payload.clone()), ("phoenix", json!({"status": "ok", "response": {}})));

        let join_ref = joined(&mut socket, &topic(f.project), &f.owner_token).await;
        let leave = socket.push(&topic(f.project), &join_ref, "phx_leave", json!({})).await.unwrap();
        let (reply, _) = socket.await_reply(&leave).await.unwrap();
        assert_eq!(reply.payload["status"], "ok");
        let close = next_frame(&mut socket, WAIT).await.unwrap();
        assert_eq!(close.event, "phx_close");

        // Bare `realtime:` and foreign topics.
        let (_, reply) = join(&mut socket, "realtime:", &f.owner_token, false).await;
        assert_eq!(reply["response"]["reason"], "TopicNameRequired: You must provide a topic name");
        let (_, reply) = join(&mut socket, "room:1", &f.owner_token, false).await;
        assert_eq!(reply["response"]["reason"], "unmatched topic");

        // A topic past the limit is refused even on a public channel with the anon key alone,
        // and the socket carries on.
        let long = format!("realtime:{}", "t".repeat(RealtimeConfig::default().max_topic_bytes));
        let (_, reply) = join(&mut socket, &long, &f.app.anon_key, false).await;
        assert_eq!(reply["response"]["reason"], "TopicNameTooLong: a topic has at most 256 bytes", "{reply}");
        let (_, reply) = join(&mut socket, "realtime:lobby", &f.app.anon_key, false).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }
}

#[tokio::test]
async fn events_arrive_only_after_commit_and_never_for_a_rollback() {
    let f = fixture().await;
    let mut socket = connect(&f.app, Vsn::V2).await;
    joined(&mut socket, &topic(f.project), &f.owner_token).await;

    let mut client = f.app.db.connect().await.unwrap();
    let claims = json!({"role": "authenticated", "sub": f.owner}).to_string();
    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims]).await.unwrap();
    tx.execute("SELECT public.upsert_project_file($1, 'held.ts', 'x', 'typescript')", &[&f.project]).await.unwrap();
    assert_eq!(next_broadcast(&mut socket, Duration::from_millis(400)).await, None, "nothing before commit");
    tx.commit().await.unwrap();
    let (event, payload) = next_broadcast(&mut socket, WAIT).await.expect("the event after commit");
    assert_eq!((event.as_str(), payload["seq"].as_i64()), ("file:update", Some(1)));

    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&claims]).await.unwrap();
    tx.execute("SELECT public.upsert_project_file($1, 'undone.ts', 'x', 'typescript')", &[&f.project]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(next_broadcast(&mut socket, Duration::from_millis(400)).await, None, "a rollback emits nothing");
    f.upsert("after.ts", "y", None).await;
    let (_, payload) = next_broadcast(&mut socket, WAIT).await.unwrap();
    assert_eq!(payload["seq"], 2, "the rolled-back write took no seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_through_two_instances_reach_both_in_seq_order() {
    let f = std::sync::Arc::new(fixture().await);
    let second = spawn_app(AppOptions::on(f.app.db.clone())).await;
    let mut on_first = connect(&f.app, Vsn::V2).await;
    let mut on_second = connect(&second, Vsn::V1).await;
    joined(&mut on_first, &topic(f.project), &f.owner_token).await;
    joined(&mut on_second, &topic(f.project), &f.owner_token).await;

    const WRITERS: usize = 6;
    const WRITES: usize = 15;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (f, api) = (f.clone(), if writer % 2 == 0 { f.app.api() } else { second.api() });
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let args = json!({"project_uuid": f.project, "p_file_path": format!("w{writer}.txt"), "p_content": format!("{i}"), "p_file_type": "text"});
                let reply = api.rpc(Some(&f.owner_token), "upsert_project_file", args).await.unwrap();
                assert_eq!(reply.status, 200, "{}", reply.body);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = (WRITERS * WRITES) as i64;
    for socket in [&mut on_first, &mut on_second] {
        let mut seqs = Vec::new();
        while let Some((_, payload)) = next_broadcast(socket, WAIT).await {
            seqs.push(payload["seq"].as_i64().unwrap());
            if seqs.len() as i64 == total {
                break;
            }
        }
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "every event, once, in seq order");
    }
}

#[tokio::test]
async fn nothing_reaches_a_non_member_and_containers_stay_in_their_project() {
    let f = fixture().await;
    let stranger = f.app.create_user().await;
    let stranger_token = f.app.user_token(stranger);
    let mut socket = connect(&f.app, Vsn::V2).await;
    let (_, reply) = join(&mut socket, &topic(f.project), &stranger_token, true).await;
    assert_eq!(
        reply["response"]["reason"],
        format!("Unauthorized: You do not have permissions to read from this Channel topic: project:{}", f.project)
    );
    // A public channel of the same name is allowed but carries none of the private events.
    let (_, reply) = join(&mut socket, &topic(f.project), &stranger_token, false).await;
    assert_eq!(reply["status"], "ok");

    let other_owner = f.app.create_user().await;
    let other = f.app.create_project(other_owner).await;
    let container = f.app.container_token(f.project);
    let mut box_socket = connect(&f.app, Vsn::V2).await;
    let (_, reply) = join(&mut box_socket, &topic(other), &container, true).await;
    assert_eq!(reply["status"], "error", "a container token cannot join another project");
    joined(&mut box_socket, &topic(f.project), &container).await;

    f.upsert("secret.txt", "s", None).await;
    assert_eq!(next_broadcast(&mut socket, Duration::from_millis(500)).await, None);
    let (_, payload) = next_broadcast(&mut box_socket, WAIT).await.expect("the container receives its project");
    assert_eq!(payload["file_path"], "secret.txt");
}

#[tokio::test]
async fn a_token_that_expires_while_joined_closes_the_channel() {
    let f = fixture().await;
    let short =
        f.app.token(claims(json!({"role": "authenticated", "sub": f.owner, "exp": fsync_testkit::now_s() + 2})));
    let mut socket = connect(&f.app, Vsn::V2).await;
    let join_ref = joined(&mut socket, &topic(f.project), &short).await;
    let system = next_frame(&mut socket, Duration::from_secs(5)).await.expect("a system message");
    assert_eq!(system.event, "system");
    assert_eq!(system.join_ref.as_deref(), Some(join_ref.as_str()));
    assert_eq!(system.payload["status"], "error");
    assert!(system.payload["message"].as_str().unwrap().starts_with("Token has expired"), "{}", system.payload);
    assert_eq!(next_frame(&mut socket, WAIT).await.unwrap().event, "phx_close");
    // The socket itself lives on.
    let hb = socket.push_heartbeat().await.unwrap();
    assert!(socket.await_reply(&hb).await.is_ok());
}

#[tokio::test]
async fn access_token_refresh_extends_a_channel_and_a_revoked_reader_is_closed() {
    let f = fixture().await;
    let short =
        f.app.token(claims(json!({"role": "authenticated", "sub": f.owner, "exp": fsync_testkit::now_s() + 2})));
    let mut socket = connect(&f.app, Vsn::V2).await;
    let join_ref = joined(&mut socket, &topic(f.project), &short).await;
    socket.push(&topic(f.project), &join_ref, "access_token", json!({"access_token": f.owner_token})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    f.upsert("still.txt", "here", None).await;
    let (event, _) = next_broadcast(&mut socket, WAIT).await.expect("the refreshed channel outlived the first token");
    assert_eq!(event, "file:update");

    // A token of someone who may not read the topic ends the channel.
    let stranger = f.app.create_user().await;
    socket
        .push(&topic(f.project), &join_ref, "access_token", json!({"access_token": f.app.user_token(stranger)}))
        .await
        .unwrap();
    let system = next_frame(&mut socket, WAIT).await.unwrap();
    assert_eq!(
        system.payload["message"],
        format!("You no longer have permission to read from this Channel topic: project:{}", f.project)
    );
    assert_eq!(next_frame(&mut socket, WAIT).await.unwrap().event, "phx_close");
}

#[tokio::test]
async fn malformed_frames_are_answered_or_dropped_and_everyone_carries_on() {
    let f = fixture().await;
    let mut bystander = connect(&f.app, Vsn::V2).await;
    joined(&mut bystander, &topic(f.project), &f.owner_token).await;
    let mut socket = connect(&f.app, Vsn::V2).await;
    let join_ref = joined(&mut socket, &topic(f.project), &f.owner_token).await;

    for garbage in ["not json", "{\"topic\":\"x\"}", "[1,2]", "[null,\"9\",5,\"e\",{}]"] {
        socket.send_text(garbage).await.unwrap();
    }
    socket.send_text(&"x".repeat(2 * 1024 * 1024)).await.unwrap();
    socket.send_binary(vec![9, 9, 9]).await.unwrap();
    socket.send_binary(vec![3, 200, 0, 0, 0, 0, 1]).await.unwrap();
    // An unknown event on a joined channel, and any event on a topic not joined, get error replies.
    let unknown = socket.push(&topic(f.project), &join_ref, "fly", json!({})).await.unwrap();
    let (reply, _) = socket.await_reply(&unknown).await.unwrap();
    assert_eq!(reply.payload["response"]["reason"], "unknown event \"fly\"");
    let stray = socket.push("realtime:elsewhere", "1", "broadcast", json!({})).await.unwrap();
    let (reply, _) = socket.await_reply(&stray).await.unwrap();
    assert_eq!(reply.payload["response"]["reason"], "unmatched topic");

    let hb = socket.push_heartbeat().await.unwrap();
    socket.await_reply(&hb).await.expect("the connection carries on");
    f.upsert("after-garbage.txt", "ok", None).await;
    assert!(next_broadcast(&mut socket, WAIT).await.is_some());
    assert!(next_broadcast(&mut bystander, WAIT).await.is_some(), "other clients carry on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_consumer_is_disconnected_instead_of_stalling_others() {
    let config = RealtimeConfig { queue_capacity: 8, ..RealtimeConfig::default() };
    let app = spawn_app(AppOptions::default().realtime(config)).await;
    let owner = app.create_user().await;
    let project = app.create_project(owner).await;
    let f = Fixture { owner_token: app.user_token(owner), app, owner, project };

    let mut slow = connect(&f.app, Vsn::V2).await;
    joined(&mut slow, &topic(project), &f.owner_token).await;
    let mut fast = connect(&f.app, Vsn::V2).await;
    joined(&mut fast, &topic(project), &f.owner_token).await;
    assert_eq!(f.app.state_sockets(), 2);

    // 100 KiB events: the slow socket never reads, so the kernel buffers fill and its queue
    // overflows; the fast one reads everything.
    let content = "z".repeat(100 * 1024);
    const WRITES: i64 = 120;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Some((_, payload)) = next_broadcast(&mut fast, Duration::from_secs(10)).await {
            seqs.push(payload["seq"].as_i64().unwrap());
            if seqs.len() as i64 == WRITES {
                break;
            }
        }
        seqs
    });
    for i in 0..WRITES {
        let (status, body) = f.upsert("big.txt", &format!("{i}{content}"), None).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(reader.await.unwrap(), (1..=WRITES).collect::<Vec<_>>(), "the fast consumer got every event");
    // The slow socket was dropped: only the fast one is left.
    let deadline = fsync_testkit::now() + WAIT;
    while f.app.state_sockets() > 1 && fsync_testkit::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.app.state_sockets(), 1, "the slow consumer was disconnected");
    drop(slow);
}

#[tokio::test]
async fn client_broadcasts_are_relayed_only_when_kept_and_only_for_writers() {
    // Off (the default): refused.
    let f = fixture().await;
    let mut socket = connect(&f.app, Vsn::V2).await;
    let join_ref = joined(&mut socket, &topic(f.project), &f.owner_token).await;
    let push = socket
        .push(
            &topic(f.project),
            &join_ref,
            "broadcast",
            json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1}}),
        )
        .await
        .unwrap();
    let (reply, _) = socket.await_reply(&push).await.unwrap();
    assert!(reply.payload["response"]["reason"].as_str().unwrap().starts_with("ClientBroadcastDisabled"));

    // On: relayed through the database to every instance; viewers may not send.
    let kept = RealtimeConfig { keep_client_broadcast: true, ..RealtimeConfig::default() };
    let app = spawn_app(AppOptions::default().realtime(kept.clone())).await;
    let owner = app.create_user().await;
    let viewer = app.create_user().await;
    let project = app.create_project(owner).await;
    app.add_member(owner, project, viewer, "viewer").await;
    let second = spawn_app(AppOptions::on(app.db.clone()).realtime(kept)).await;
    // Clients broadcast on `project:<uuid>:client`; the server's topic takes none.
    let client_topic = format!("{}:client", topic(project));

    let mut sender = connect(&app, Vsn::V2).await;
    let sender_ref = joined(&mut sender, &client_topic, &app.user_token(owner)).await;
    let mut receiver = connect(&second, Vsn::V1).await;
    joined(&mut receiver, &client_topic, &app.user_token(viewer)).await;
    let mut viewer_socket = connect(&app, Vsn::V2).await;
    let viewer_ref = joined(&mut viewer_socket, &client_topic, &app.user_token(viewer)).await;

    let push = sender
        .push(
            &client_topic,
            &sender_ref,
            "broadcast",
            json!({"type": "broadcast", "event": "cursor", "payload": {"x": 7}}),
        )
        .await
        .unwrap();
    let (reply, _) = sender.await_reply(&push).await.unwrap();
    assert_eq!(reply.payload["status"], "ok", "acknowledged: {}", reply.payload);
    let (event, payload) = next_broadcast(&mut receiver, WAIT).await.expect("relayed to the other instance");
    assert_eq!((event.as_str(), payload), ("cursor", json!({"x": 7})));
    assert_eq!(next_broadcast(&mut sender, Duration::from_millis(300)).await, None, "self: false");

    // The server's event names are reserved: a client cannot forge a file:update.
    let forged = sender
        .push(
            &client_topic,
            &sender_ref,
            "broadcast",
            json!({"type": "broadcast", "event": "file:update", "payload": {"seq": 1}}),
        )
        .await
        .unwrap();
    let (reply, _) = sender.await_reply(&forged).await.unwrap();
    assert_eq!(reply.payload["response"]["reason"], "ReservedEvent: file:update is sent by the server only");

    // realtime-js under 2.0.0 sends `channel.send()` as a binary kind-3 frame: relayed the same.
    let mut frame = vec![3u8, sender_ref.len() as u8, 2, client_topic.len() as u8, 4, 0, 1];
    for part in [sender_ref.as_bytes(), b"99", client_topic.as_bytes(), b"draw", br#"{"y":2}"#] {
        frame.extend_from_slice(part);
    }
    sender.send_binary(frame).await.unwrap();
    let (event, payload) = next_broadcast(&mut receiver, WAIT).await.expect("a binary push, relayed");
    assert_eq!((event.as_str(), payload), ("draw", json!({"y": 2})));

    let push = viewer_socket
        .push(&client_topic, &viewer_ref, "broadcast", json!({"type": "broadcast", "event": "cursor", "payload": {}}))
        .await
        .unwrap();
    let (reply, _) = viewer_socket.await_reply(&push).await.unwrap();
    assert!(reply.payload["response"]["reason"].as_str().unwrap().starts_with("Unauthorized"), "{}", reply.payload);
    assert_eq!(next_broadcast(&mut receiver, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_server_going_away_tells_its_sockets() {
    let f = fixture().await;
    let mut socket = connect(&f.app, Vsn::V2).await;
    joined(&mut socket, &topic(f.project), &f.owner_token).await;
    f.app.close_realtime();
    let system = next_frame(&mut socket, WAIT).await.unwrap();
    assert_eq!(system.event, "system");
    assert_eq!(system.payload["message"], "Server requested disconnect");
    assert_eq!(next_frame(&mut socket, WAIT).await.unwrap().event, "phx_close");
    assert!(next_frame(&mut socket, WAIT).await.is_none(), "then the connection closes");
}

#[tokio::test]
async fn an_idle_socket_is_closed() {
    let config = RealtimeConfig { idle_timeout: Duration::from_millis(300), ..RealtimeConfig::default() };
    let app = spawn_app(AppOptions::default().realtime(config)).await;
    let mut socket = connect(&app, Vsn::V2).await;
    // Heartbeats keep it open...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let hb = socket.push_heartbeat().await.unwrap();
        socket.await_reply(&hb).await.unwrap();
    }
    // ...silence closes it.
    let started = fsync_testkit::now();
    assert!(next_frame(&mut socket, WAIT).await.is_none());
    assert!(started.elapsed() < Duration::from_secs(2), "closed by the idle timeout, not the wait");
}

#[tokio::test]
async fn a_lost_listen_connection_makes_every_client_resync() {
    let f = fixture().await;
    let mut socket = connect(&f.app, Vsn::V2).await;
    joined(&mut socket, &topic(f.project), &f.owner_token).await;
    let admin = f.app.db.connect().await.unwrap();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            &[&fsync_reference::pg::realtime::LISTEN_APPLICATION_NAME],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one LISTEN connection per instance");
    // Whatever was committed while it was down was never notified: the server reconnects and
    // tells every client to rejoin and catch up.
    f.upsert("while-down.txt", "x", None).await;
    let system = next_frame(&mut socket, WAIT).await.expect("a system message");
    assert_eq!(
        (system.event.as_str(), system.payload["message"].as_str()),
        ("system", Some("Server requested disconnect"))
    );
    assert_eq!(next_frame(&mut socket, WAIT).await.unwrap().event, "phx_close");

    // A new connection gets live events again.
    let mut again = connect(&f.app, Vsn::V2).await;
    joined(&mut again, &topic(f.project), &f.owner_token).await;
    f.upsert("after.txt", "y", None).await;
    let (_, payload) = next_broadcast(&mut again, WAIT).await.expect("live again");
    assert_eq!(payload["file_path"], "after.txt");
}

/// A socket's frames and joins are rate limited (heartbeats aside): what is over the rate is
/// answered with an error and not acted on, and the socket carries on.
#[tokio::test]
async fn frames_and_joins_beyond_a_sockets_rate_are_refused_and_it_carries_on() {
    let config = RealtimeConfig { messages_per_s: 5, joins_per_s: 2, ..RealtimeConfig::default() };
    let app = spawn_app(AppOptions::default().realtime(config)).await;
    let mut socket = connect(&app, Vsn::V2).await;
    let mut refused_joins = 0;
    for room in 0..4 {
        let (_, reply) = join(&mut socket, &format!("realtime:room-{room}"), &app.anon_key, false).await;
        if reply["response"]["reason"] == "ChannelRateLimitReached: too many joins per second" {
            refused_joins += 1;
        }
    }
    assert!(refused_joins >= 1, "4 joins at once against 2 a second");
    let mut refused = 0;
    for _ in 0..20 {
        let sent = socket.push("realtime:room-0", "1", "presence", json!({})).await.unwrap();
        let (reply, _) = tokio::time::timeout(WAIT, socket.await_reply(&sent)).await.expect("a reply").unwrap();
        if reply.payload["response"]["reason"] == "RateLimitReached: too many messages per second" {
            refused += 1;
        }
    }
    assert!(refused >= 10, "20 frames at once against 5 a second: {refused} refused");
    for _ in 0..10 {
        let hb = socket.push_heartbeat().await.unwrap();
        let (reply, _) = socket.await_reply(&hb).await.unwrap();
        assert_eq!(reply.payload["status"], "ok", "heartbeats are never limited");
    }
}

#[tokio::test]
async fn a_member_removed_from_the_project_loses_their_open_channel() {
    let f = fixture().await;
    let realtime = RealtimeConfig { reauthorize_every: Duration::from_millis(200), ..RealtimeConfig::default() };
    let app = spawn_app(AppOptions::on(f.app.db.clone()).realtime(realtime)).await;
    let editor = app.create_user().await;
    app.add_member(f.owner, f.project, editor, "editor").await;
    let mut socket = connect(&app, Vsn::V2).await;
    joined(&mut socket, &topic(f.project), &app.user_token(editor)).await;
    let (status, body) = app
        .rpc(Some(&f.owner_token), "remove_project_member", json!({"project_uuid": f.project, "p_user_id": editor}))
        .await;
    assert_eq!(status, 200, "{body}");
    // Within the next authorization round, with no token refresh or expiry in sight.
    let system = next_frame(&mut socket, WAIT).await.expect("the channel is closed");
    assert_eq!(
        system.payload["message"],
        format!("You no longer have permission to read from this Channel topic: project:{}", f.project)
    );
    assert_eq!(next_frame(&mut socket, WAIT).await.unwrap().event, "phx_close");
    f.upsert("after.txt", "x", None).await;
    assert!(next_broadcast(&mut socket, Duration::from_millis(500)).await.is_none(), "nothing reaches them");
}

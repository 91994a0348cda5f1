//! The listener's bounds: an idle connection is closed, a client address past its cap has its
//! extra connections closed while others still get through, the server answers while a
//! thousand idle connections are open, and a client trickling a head or a body is cut off at the
//! request timeouts.

use fsync_reference::http::RequestTimeouts;
use fsync_reference::listener::ConnectionLimits;
use fsync_testkit::{spawn_app, AppOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Generous: each wait ends as soon as the server acts.
const WITHIN: Duration = Duration::from_secs(10);

/// Connects from `local` (a loopback address of our choosing) to `server`.
async fn connect_from(local: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((local, 0))).unwrap();
    socket.connect(server).await.expect("connect")
}

/// Whether the server closes `stream` (EOF or reset) within `WITHIN`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(WITHIN, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

/// `GET /health` on `stream`; the status line.
async fn health(stream: &mut TcpStream, addr: SocketAddr) -> String {
    let request = format!("GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(WITHIN, stream.read(&mut answer)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let limits = ConnectionLimits { idle_timeout: Duration::from_millis(300), ..ConnectionLimits::default() };
    let app = spawn_app(AppOptions::default().connections(limits)).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_by_server(&mut idle).await, "an idle connection is closed");

    // One that keeps asking stays open past several idle timeouts.
    let mut busy = TcpStream::connect(app.addr).await.unwrap();
    for _ in 0..6 {
        assert_eq!(health(&mut busy, app.addr).await, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test]
async fn past_its_cap_an_address_has_new_connections_closed_and_others_get_through() {
    let limits = ConnectionLimits { max_per_address: 3, ..ConnectionLimits::default() };
    let app = spawn_app(AppOptions::default().connections(limits)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from([127, 0, 0, 2], app.addr).await;
        assert_eq!(health(&mut stream, app.addr).await, "HTTP/1.1 200 OK");
        held.push(stream);
    }
    let mut extra = connect_from([127, 0, 0, 2], app.addr).await;
    assert!(closed_by_server(&mut extra).await, "a fourth connection from the address is closed");
    let mut other = connect_from([127, 0, 0, 3], app.addr).await;
    assert_eq!(health(&mut other, app.addr).await, "HTTP/1.1 200 OK", "another address gets through");

    // A closed connection gives its place back.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let mut stream = connect_from([127, 0, 0, 2], app.addr).await;
        let request = format!("GET /health HTTP/1.1\r\nhost: {}\r\n\r\n", app.addr);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(WITHIN, stream.read(&mut answer)).await {
            if n > 0 {
                again = Some(String::from_utf8_lossy(&answer[..n]).into_owned());
                break;
            }
        }
        // The server may not have seen the close yet: try again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some_and(|a| a.starts_with("HTTP/1.1 200")), "the freed place is taken again");
}

#[tokio::test]
async fn health_answers_while_a_thousand_idle_connections_are_open() {
    let app = spawn_app(AppOptions::default()).await;
    let mut idle = Vec::with_capacity(1_000);
    for i in 0..1_000u32 {
        // Spread over ten loopback addresses, as many clients would be.
        idle.push(connect_from([127, 0, 1, (i % 10) as u8 + 1], app.addr).await);
    }
    let reply = app.api().request(axum::http::Method::GET, "/health", None, &[], Vec::<u8>::new()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.bytes));
    // The idle ones are still open (nothing was closed to make room).
    let mut probe = idle.pop().unwrap();
    assert_eq!(health(&mut probe, app.addr).await, "HTTP/1.1 200 OK");
}

/// Sends `bytes` one at a time, 50 ms apart, until the server answers or closes; what it answered
/// (empty when it closed without a word), or `None` if every byte went out unanswered.
async fn trickle(stream: &mut TcpStream, bytes: &[u8]) -> Option<String> {
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return Some(String::new());
        }
        let mut answer = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut answer)).await {
            Ok(Ok(n)) => return Some(String::from_utf8_lossy(&answer[..n]).into_owned()),
            Ok(Err(_)) => return Some(String::new()),
            Err(_) => {}
        }
    }
    None
}

#[tokio::test]
async fn a_trickled_head_or_body_is_cut_off_at_its_timeout_though_bytes_keep_moving() {
    // Bytes arrive every 50 ms, well inside the idle timeout: only the request timeouts can end it.
    let requests = RequestTimeouts { header: Duration::from_millis(500), body: Duration::from_millis(500) };
    let limits = ConnectionLimits { requests, ..ConnectionLimits::default() };
    let app = spawn_app(AppOptions::default().connections(limits)).await;

    // A head that never ends (200 bytes would take 10 s).
    let mut slow_head = TcpStream::connect(app.addr).await.unwrap();
    let head = format!("GET /health HTTP/1.1\r\nhost: {}\r\nx-slow: {}", app.addr, "a".repeat(200));
    let answer = trickle(&mut slow_head, head.as_bytes()).await;
    assert!(answer.is_some(), "the trickled head was cut off");
    assert!(closed_by_server(&mut slow_head).await, "and its connection closed");

    // A whole head, then a body that trickles.
    let mut slow_body = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /rest/v1/rpc/list_current_files HTTP/1.1\r\nhost: {}\r\napikey: {key}\r\n\
         authorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n",
        app.addr,
        key = app.anon_key,
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let answer = trickle(&mut slow_body, &[b' '; 200]).await.expect("the trickled body was cut off");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within 0.5 s"), "{answer}");

    // A request at a normal pace is untouched.
    let mut fine = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(health(&mut fine, app.addr).await, "HTTP/1.1 200 OK");
}

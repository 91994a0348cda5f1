//! `FaultProxy` between a client and a tiny TCP server, PostgreSQL or the real server: each test
//! applies one fault and checks what the peers see. Timings assert lower bounds only.

use fsync_testkit::{now, Fault, FaultProxy};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// How long a test waits for something that should happen promptly.
const WAIT: Duration = Duration::from_secs(3);
/// How long silence must last to count as no answer.
const SILENCE: Duration = Duration::from_millis(300);

/// A server that echoes every byte and passes the EOF back.
async fn echo_server() -> SocketAddr {
    serve(|mut stream| async move {
        let (mut read, mut write) = stream.split();
        let _ = tokio::io::copy(&mut read, &mut write).await;
        let _ = write.shutdown().await;
    })
    .await
}

/// A server that says `tag` to each connection and closes it.
async fn tag_server(tag: &'static [u8]) -> SocketAddr {
    serve(move |mut stream| async move {
        let _ = stream.write_all(tag).await;
        let _ = stream.shutdown().await;
    })
    .await
}

async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    timeout(WAIT, TcpStream::connect(proxy.addr())).await.expect("connect in time").expect("connect")
}

/// Sends `bytes` and reads as many back.
async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.expect("write");
    let mut back = vec![0; bytes.len()];
    timeout(WAIT, stream.read_exact(&mut back)).await.expect("answer in time").expect("read the answer");
    back
}

/// Whether the peer closed or reset `stream` (it reads EOF or an error in time).
async fn ended(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(timeout(WAIT, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

/// Whether nothing arrives on `stream` for `SILENCE`, and it is still open.
async fn silent(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    timeout(SILENCE, stream.read(&mut byte)).await.is_err()
}

/// Everything `stream` says until its EOF.
async fn read_all(mut stream: TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut all)).await.expect("EOF in time").expect("read");
    all
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Writes `bytes` and half-closes while reading everything back until the EOF.
async fn echo_all(stream: TcpStream, bytes: Vec<u8>) -> Vec<u8> {
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&bytes).await.expect("write");
        write.shutdown().await.expect("half-close");
    });
    let mut back = Vec::new();
    timeout(Duration::from_secs(10), read.read_to_end(&mut back)).await.expect("echo in time").expect("read");
    writer.await.expect("writer");
    back
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = now() + WAIT;
    while !check() {
        assert!(now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn relays_2_mb_both_ways_byte_exact_and_passes_a_half_close_on() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let sent = payload(2 * 1024 * 1024);
    // The echo server sees the client's EOF only through the proxy, and the client sees the
    // server's only through the proxy: reading to the end proves both half-closes passed.
    let back = echo_all(connect(&proxy).await, sent.clone()).await;
    assert!(back == sent, "the echo differs ({} bytes back of {})", back.len(), sent.len());
    assert_eq!(proxy.accepted(), 1);
    eventually("the finished connection is no longer counted", || proxy.connections() == 0).await;
}

#[tokio::test]
async fn a_cut_closes_open_connections_and_refuses_new_ones_until_restored() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");
    assert_eq!(proxy.connections(), 1);

    proxy.cut();
    assert_eq!(proxy.fault(), Fault::Cut);
    assert!(ended(&mut open).await, "an open connection is closed by a cut");
    let mut refused = connect(&proxy).await;
    assert!(ended(&mut refused).await, "a new connection is closed at once during a cut");
    eventually("no connection is relayed during a cut", || proxy.connections() == 0).await;

    proxy.restore();
    let mut again = connect(&proxy).await;
    assert_eq!(round_trip(&mut again, b"pong").await, b"pong");
    assert_eq!(proxy.accepted(), 3);
}

#[tokio::test]
async fn a_cut_restored_at_once_still_closes_the_connections_it_cut() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");
    // The relay cannot look between these two: it must still learn that it was cut.
    proxy.cut();
    proxy.restore();
    assert!(ended(&mut open).await, "a connection cut and restored before it looked is closed");
}

#[tokio::test]
async fn a_reset_resets_open_connections_and_new_ones() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");

    proxy.set(Fault::Reset);
    let mut byte = [0; 1];
    let read = timeout(WAIT, open.read(&mut byte)).await.expect("reset in time");
    assert_eq!(read.expect_err("an open connection is reset").kind(), ErrorKind::ConnectionReset);
    let mut new = connect(&proxy).await;
    let read = timeout(WAIT, new.read(&mut byte)).await.expect("reset in time");
    assert_eq!(read.expect_err("a new connection is reset").kind(), ErrorKind::ConnectionReset);

    proxy.restore();
    let mut again = connect(&proxy).await;
    assert_eq!(round_trip(&mut again, b"pong").await, b"pong");
}

#[tokio::test]
async fn a_delay_slows_both_directions_of_open_connections_in_order() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"warm").await, b"warm");

    let delay = Duration::from_millis(200);
    proxy.set(Fault::Delay(delay));
    let start = now();
    open.write_all(b"ab").await.expect("write");
    open.write_all(b"cd").await.expect("write");
    let mut back = [0; 4];
    timeout(WAIT, open.read_exact(&mut back)).await.expect("answer in time").expect("read");
    let elapsed = now() - start;
    assert_eq!(&back, b"abcd", "delayed chunks keep their order");
    // Delayed on the way there and on the way back.
    assert!(elapsed >= 2 * delay, "a round trip took {elapsed:?}, less than twice {delay:?}");
}

#[tokio::test]
async fn a_throttle_limits_each_direction_to_its_rate() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let stream = connect(&proxy).await;
    proxy.set(Fault::Throttle { bytes_per_s: 64 * 1024 });
    let sent = payload(128 * 1024);
    let start = now();
    let back = echo_all(stream, sent.clone()).await;
    let elapsed = now() - start;
    assert!(back == sent, "the throttled echo differs");
    // 128 KiB at 64 KiB/s: about two seconds; the first piece may pass at once.
    assert!(elapsed >= Duration::from_millis(1500), "128 KiB at 64 KiB/s took only {elapsed:?}");
}

#[tokio::test]
async fn a_blackhole_swallows_bytes_keeps_connections_open_and_closes_them_when_restored() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");

    proxy.set(Fault::Blackhole);
    open.write_all(b"lost").await.expect("a write into a blackhole succeeds");
    assert!(silent(&mut open).await, "no answer comes out of a blackhole, and the connection stays open");
    let mut new = connect(&proxy).await;
    new.write_all(b"lost").await.expect("a write into a blackhole succeeds");
    assert!(silent(&mut new).await, "a new connection goes nowhere, and stays open");

    proxy.restore();
    assert!(ended(&mut open).await, "a connection that lost bytes is closed when the blackhole ends");
    assert!(ended(&mut new).await, "a connection that went nowhere is closed when the blackhole ends");
    let mut again = connect(&proxy).await;
    assert_eq!(round_trip(&mut again, b"pong").await, b"pong");
}

#[tokio::test]
async fn set_upstream_sends_new_connections_elsewhere() {
    let proxy = FaultProxy::start(tag_server(b"first").await).await.expect("start the proxy");
    assert_eq!(read_all(connect(&proxy).await).await, b"first");
    proxy.set_upstream(tag_server(b"second").await);
    assert_eq!(read_all(connect(&proxy).await).await, b"second");
}

#[tokio::test]
async fn stopping_ends_every_connection_and_the_listener() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");

    let handle = proxy.clone();
    timeout(WAIT, handle.stop()).await.expect("stop in time");
    assert_eq!(proxy.connections(), 0, "stop returns once every connection has ended");
    assert!(ended(&mut open).await, "a stopped proxy closes its connections");
    let refused = TcpStream::connect(proxy.addr()).await;
    assert_eq!(refused.expect_err("nothing listens any more").kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_proxy() {
    let proxy = FaultProxy::start(echo_server().await).await.expect("start the proxy");
    let mut open = connect(&proxy).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");
    let addr = proxy.addr();
    drop(proxy);
    assert!(ended(&mut open).await, "a dropped proxy closes its connections");
    let refused = TcpStream::connect(addr).await;
    assert_eq!(refused.expect_err("nothing listens any more").kind(), ErrorKind::ConnectionRefused);
}

/// The machine's PostgreSQL (as the testkit's admin URL names it) and its connection settings.
async fn postgres() -> (SocketAddr, tokio_postgres::Config) {
    use tokio_postgres::config::Host;
    let config: tokio_postgres::Config = fsync_testkit::admin_url().parse().expect("parse the admin URL");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let addr = tokio::net::lookup_host((host.as_str(), port)).await.expect("resolve").next().expect("an address");
    (addr, config)
}

/// A connection to PostgreSQL through `proxy`, as `config` says otherwise.
async fn connect_pg(
    proxy: &FaultProxy,
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut proxied = tokio_postgres::Config::new();
    proxied.host("127.0.0.1").port(proxy.addr().port()).connect_timeout(WAIT);
    if let Some(user) = config.get_user() {
        proxied.user(user);
    }
    if let Some(dbname) = config.get_dbname() {
        proxied.dbname(dbname);
    }
    if let Some(password) = config.get_password() {
        proxied.password(password);
    }
    let (client, connection) = proxied.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn select_1(client: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    let row = timeout(WAIT, client.query_one("SELECT 1", &[])).await.expect("an answer or an error in time")?;
    Ok(row.get(0))
}

#[tokio::test]
async fn postgres_through_the_proxy_fails_when_cut_and_works_after_reconnecting() {
    let (upstream, config) = postgres().await;
    let proxy = FaultProxy::start(upstream).await.expect("start the proxy");
    let client = connect_pg(&proxy, &config).await.expect("connect through the proxy");
    assert_eq!(select_1(&client).await.expect("SELECT 1"), 1);

    proxy.cut();
    assert!(select_1(&client).await.is_err(), "a query on a cut connection fails");
    assert!(connect_pg(&proxy, &config).await.is_err(), "no new connection while cut");

    proxy.restore();
    let client = connect_pg(&proxy, &config).await.expect("reconnect through the proxy");
    assert_eq!(select_1(&client).await.expect("SELECT 1 after reconnecting"), 1);
}

#[tokio::test]
async fn the_server_through_the_proxy_answers_until_cut_and_again_when_restored() {
    let app = fsync_testkit::spawn_app(fsync_testkit::AppOptions::default()).await;
    let proxy = FaultProxy::start(app.addr).await.expect("start the proxy");
    // No pooled connection: each request dials the proxy, as a client after a cut would.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(WAIT).build().expect("client");
    let health = format!("{}/health", proxy.url());

    let status = http.get(&health).send().await.expect("health through the proxy").status();
    assert_eq!(status, 200);
    proxy.cut();
    assert!(http.get(&health).send().await.is_err(), "no answer through a cut proxy");
    proxy.restore();
    let status = http.get(&health).send().await.expect("health after the restore").status();
    assert_eq!(status, 200);
}

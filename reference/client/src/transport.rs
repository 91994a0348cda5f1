//! The one way the client, the feed and the agent reach the network (DESIGN §13): a [`Dialer`]
//! (host and port in, a byte stream out) under every HTTP request and every WebSocket.
//!
//! Production dials TCP ([`TcpDialer`]). Tests plug in in-process streams, and the simulator
//! plugs in turmoil's, without any other code knowing. HTTP/1.1 runs through hyper-util's client
//! with a connector built from the dialer; WebSockets through tokio-tungstenite's `client_async`
//! over a dialed stream. Plain `http://` and `ws://` only: the reference server speaks no TLS.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A response whose body is still arriving.
pub type Streamed = Response<Incoming>;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// A bidirectional byte stream (a TCP connection, or its stand-in).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A dialed stream.
pub type Stream = Box<dyn Io>;

/// What [`Dialer::dial`] returns.
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send + 'a>>;

/// Opens byte streams to `host:port`.
pub trait Dialer: Send + Sync + 'static {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a>;
}

/// Real TCP: production.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Stream)
        })
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// hyper-util's connector, built from a dialer.
#[derive(Clone)]
struct DialConnector(Arc<dyn Dialer>);

impl tower_service::Service<Uri> for DialConnector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.0.clone();
        Box::pin(async move {
            let (host, port) = host_port(&uri).map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
            Ok(TokioIo::new(dialer.dial(&host, port).await?))
        })
    }
}

/// The host (without IPv6 brackets) and port of an `http://` or `ws://` URI.
fn host_port(uri: &Uri) -> Result<(String, u16), String> {
    let default_port = match uri.scheme_str() {
        Some("http") | Some("ws") => 80,
        Some("https") | Some("wss") => return Err("TLS (https, wss) is not supported by this client".into()),
        Some(other) => return Err(format!("unsupported scheme {other:?}")),
        None => return Err("the URL has no scheme".into()),
    };
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok((host, uri.port_u16().unwrap_or(default_port)))
}

/// Why a request got no (whole) answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid request to {url:?}: {reason}")]
    InvalidRequest { url: String, reason: String },
    // hyper's own messages are terse: its whole chain says what happened.
    #[error("{}", fsync_store::error::chain(.0))]
    Send(#[source] hyper_util::client::legacy::Error),
    #[error("read the response: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Fetched {
    /// The body as text (invalid UTF-8 replaced, as browsers do).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// HTTP and WebSockets over one dialer. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Transport {
    dialer: Arc<dyn Dialer>,
    http: Client<DialConnector, Full<Bytes>>,
}

impl Transport {
    /// Over real TCP.
    pub fn tcp() -> Transport {
        Transport::new(Arc::new(TcpDialer))
    }

    /// Over `dialer`. Build it inside the runtime that uses it (the pool's tasks live there).
    pub fn new(dialer: Arc<dyn Dialer>) -> Transport {
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(DialConnector(dialer.clone()));
        Transport { dialer, http }
    }

    /// Sends `request` (an absolute `http://` URI); the body is streamed by the caller.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Streamed, TransportError> {
        self.http.request(request).await.map_err(TransportError::Send)
    }

    /// Sends `request` and reads its whole answer, at most `limit` bytes, within `timeout`.
    pub async fn fetch(
        &self,
        request: Request<Full<Bytes>>,
        limit: usize,
        timeout: Duration,
    ) -> Result<Fetched, TransportError> {
        let exchange = async {
            let (head, body) = self.send(request).await?.into_parts();
            let body = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.is::<LengthLimitError>() {
                    TransportError::TooLarge(limit)
                } else {
                    TransportError::Body(e)
                }
            })?;
            Ok(Fetched { status: head.status, headers: head.headers, body: body.to_bytes() })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| TransportError::Timeout(timeout))?
    }

    /// Opens a WebSocket to `url` (`ws://host:port/path?query`) over a dialed stream.
    pub async fn websocket(
        &self,
        url: &str,
        config: Option<WebSocketConfig>,
    ) -> Result<WebSocketStream<Stream>, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::Error;
        let request = url.into_client_request()?;
        let (host, port) = host_port(request.uri()).map_err(|reason| Error::Io(io::Error::other(reason)))?;
        let stream = self.dialer.dial(&host, port).await.map_err(Error::Io)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, config).await?;
        Ok(ws)
    }
}

impl Default for Transport {
    fn default() -> Transport {
        Transport::tcp()
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport")
    }
}

/// A request with a body, or a clear error for a URL or header that cannot be sent.
pub fn request(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Request<Full<Bytes>>, TransportError> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body.into()))
        .map_err(|e| TransportError::InvalidRequest { url: url.to_owned(), reason: e.to_string() })
}

/// `text` percent-encoded for a query string (everything but RFC 3986's unreserved characters).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_plain_urls_only() {
        let parse = |url: &str| host_port(&url.parse::<Uri>().unwrap());
        assert_eq!(parse("http://127.0.0.1:54321/rest"), Ok(("127.0.0.1".into(), 54321)));
        assert_eq!(parse("ws://server/realtime"), Ok(("server".into(), 80)));
        assert_eq!(parse("http://[::1]:8080/"), Ok(("::1".into(), 8080)));
        assert!(parse("https://x.supabase.co/").unwrap_err().contains("TLS"));
        assert!(parse("/relative").is_err());
    }

    #[test]
    fn a_bad_header_is_refused_before_sending() {
        let err = request(http::Method::GET, "http://h/", &[("apikey", "a\nb")], Bytes::new()).unwrap_err();
        assert!(matches!(err, TransportError::InvalidRequest { .. }), "{err}");
    }
}

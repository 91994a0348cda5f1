//! The server's TCP listener, with bounds: at most so many connections open at once, and so many
//! from one client address (beyond either, a new connection is closed as it is accepted); a
//! connection with no byte read or written for the idle timeout is closed; Nagle's algorithm is
//! off (a response's last small segment, or a WebSocket frame behind another, goes out at once
//! instead of waiting for the peer's delayed ACK). What bounds a client that keeps a connection
//! busy by trickling bytes is the request timeouts ([`crate::http`]), which the limits carry.

use crate::http::RequestTimeouts;
use axum::serve::Listener;
use fsync_store::Sources;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// How many connections the server keeps, and for how long an idle one.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
    /// Longer than Realtime's own idle timeout (60 s), so a socket with a live client is never
    /// cut here.
    pub idle_timeout: Duration,
    /// How long a request's head, and then its body, may take to arrive.
    pub requests: RequestTimeouts,
}

impl Default for ConnectionLimits {
    /// 16,384 connections, 2,048 from one address (a load test on one machine opens 1,000
    /// sockets and 100 agents from loopback), 120 s idle, [`RequestTimeouts::default`].
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 16_384,
            max_per_address: 2_048,
            idle_timeout: Duration::from_secs(120),
            requests: RequestTimeouts::default(),
        }
    }
}

/// Who is connected: the count in all and by address.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: BTreeMap<IpAddr, usize>,
}

/// A TCP listener that admits connections within [`ConnectionLimits`].
pub struct BoundedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    sources: Sources,
    open: Arc<Mutex<Open>>,
}

impl BoundedListener {
    pub fn new(listener: TcpListener, limits: ConnectionLimits, sources: Sources) -> BoundedListener {
        BoundedListener { listener, limits, sources, open: Arc::default() }
    }

    /// A slot for a connection from `address`, or `None` at a cap.
    fn admit(&self, address: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if open.total >= self.limits.max_connections || from_address >= self.limits.max_per_address {
            return None;
        }
        open.total += 1;
        open.by_address.insert(address, from_address + 1);
        Some(Slot { open: self.open.clone(), address })
    }
}

impl Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.admit(address.ip()) else {
                tracing::warn!(%address, "connection closed: at the connection cap");
                continue; // dropping the stream closes it
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not turn Nagle's algorithm off on a connection");
            }
            let now = self.sources.now();
            let idle = Box::pin(tokio::time::sleep_until(now + self.limits.idle_timeout));
            let stream = BoundedStream {
                stream,
                idle,
                last_moved: now,
                timeout: self.limits.idle_timeout,
                sources: self.sources.clone(),
                _slot: slot,
            };
            return (stream, address);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection's place in the counts, given back when the connection closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        match open.by_address.get_mut(&self.address) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                open.by_address.remove(&self.address);
            }
        }
    }
}

/// An accepted connection that fails with `TimedOut` when it has been idle too long.
pub struct BoundedStream {
    stream: TcpStream,
    /// Fires at the earliest moment the connection could have been idle for the timeout; when it
    /// does and bytes moved since, it is set again from the last of them (so moving bytes costs
    /// a clock reading, not a timer change).
    idle: Pin<Box<Sleep>>,
    last_moved: Instant,
    timeout: Duration,
    sources: Sources,
    _slot: Slot,
}

impl BoundedStream {
    /// Bytes moved: the idle clock starts again.
    fn touch(&mut self) {
        self.last_moved = self.sources.now();
    }

    /// A write's outcome, passed on; bytes written start the idle clock again.
    fn wrote(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        written
    }

    /// Whether the connection has been idle for the timeout (re-arming the timer when not).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle.as_mut().poll(cx).is_ready() {
            let deadline = self.last_moved + self.timeout;
            if deadline <= self.sources.now() {
                return true;
            }
            self.idle.as_mut().reset(deadline);
        }
        false
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.poll_idle(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the connection was idle")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, data);
        this.wrote(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, data);
        this.wrote(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

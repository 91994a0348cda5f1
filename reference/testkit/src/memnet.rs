//! An in-process network: listeners the server serves on and a dialer the client, the feed and
//! the agent connect through, joined by tokio duplex streams. The whole stack runs with no
//! socket (and, on the model, no database).

use fsync_client::transport::{DialFuture, Dialer, Stream};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// Bytes buffered in each direction of a connection.
const PIPE_BYTES: usize = 256 * 1024;
/// Connections waiting to be accepted, per listener.
const BACKLOG: usize = 1024;

type Listeners = Arc<Mutex<BTreeMap<(String, u16), mpsc::Sender<DuplexStream>>>>;

/// The network: who listens where.
#[derive(Clone, Default)]
pub struct MemoryNet {
    listeners: Listeners,
}

impl MemoryNet {
    pub fn new() -> MemoryNet {
        MemoryNet::default()
    }

    /// Listens on `host:port` (replacing an earlier listener there).
    pub fn listen(&self, host: &str, port: u16) -> MemoryListener {
        let (tx, rx) = mpsc::channel(BACKLOG);
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).insert((host.to_owned(), port), tx);
        MemoryListener { addr: HostPort { host: host.to_owned(), port }, incoming: rx }
    }

    /// A dialer onto this network.
    pub fn dialer(&self) -> Arc<dyn Dialer> {
        Arc::new(MemoryDialer { listeners: self.listeners.clone() })
    }
}

/// An address on the network (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The server's end: what `fsync_reference::serve` accepts from.
pub struct MemoryListener {
    addr: HostPort,
    incoming: mpsc::Receiver<DuplexStream>,
}

impl axum::serve::Listener for MemoryListener {
    type Io = DuplexStream;
    type Addr = HostPort;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(stream) => (stream, self.addr.clone()),
            // Every dialer is gone: nothing will ever connect again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr.clone())
    }
}

struct MemoryDialer {
    listeners: Listeners,
}

impl Dialer for MemoryDialer {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            let listener =
                self.listeners.lock().unwrap_or_else(|e| e.into_inner()).get(&(host.to_owned(), port)).cloned();
            let refused =
                || io::Error::new(io::ErrorKind::ConnectionRefused, format!("nothing listens on {host}:{port}"));
            let listener = listener.ok_or_else(refused)?;
            let (client, server) = tokio::io::duplex(PIPE_BYTES);
            listener.send(server).await.map_err(|_| refused())?;
            Ok(Box::new(client) as Stream)
        })
    }
}

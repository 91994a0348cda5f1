//! A loopback TCP proxy that injects faults between two parts of the real stack (client and
//! server, agent and server, server and PostgreSQL): [`FaultProxy`] listens on 127.0.0.1:0,
//! relays every accepted connection to an upstream address, and applies the current [`Fault`] to
//! the connections already open and to new ones. A test hands the proxy's address or
//! [`FaultProxy::url`] to one side instead of the other side's, then cuts, resets, delays,
//! throttles or blackholes the link, and restores it.
//!
//! Every connection is a task in a `JoinSet` owned by the accept task, and the accept task ends
//! when the last handle is dropped or [`FaultProxy::stop`] is called; so a proxy leaves nothing
//! running behind it. Buffers are bounded: a connection holds at most [`QUEUE_CHUNKS`] chunks of
//! [`CHUNK_BYTES`] per direction, and at most [`MAX_CONNECTIONS`] connections are relayed at once.

mod relay;

use relay::Link;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The most bytes read from one side in one go.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks read but not yet written, per direction of a connection (they wait out a delay or a
/// throttle there); a full queue stops reading, so the sender feels it as TCP back-pressure.
pub const QUEUE_CHUNKS: usize = 64;
/// Connections relayed at once; one more is closed at once, as a full backlog would refuse it.
pub const MAX_CONNECTIONS: usize = 4096;
/// The longest latency a [`Fault::Delay`] adds; a longer one counts as this.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// How long the accept loop waits after a failed accept (out of file descriptors, say) before it
/// tries again, so that the failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What the proxy does to the bytes it relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Relays normally.
    #[default]
    None,
    /// Closes every open connection (FIN) and closes new ones as soon as they are accepted, until
    /// restored.
    Cut,
    /// Resets every open connection (RST) and resets new ones as soon as they are accepted, until
    /// restored.
    Reset,
    /// Adds this much latency (at most [`MAX_DELAY`]) to every chunk in both directions, in order.
    Delay(Duration),
    /// Relays at most this many bytes per second per direction per connection (0 counts as 1).
    Throttle { bytes_per_s: u64 },
    /// Keeps connections open but drops every byte both ways, and accepts new connections that
    /// go nowhere: a partition where packets vanish. The streams are corrupt afterwards, so the
    /// connections open during a blackhole are closed when it ends; new ones relay again.
    Blackhole,
}

impl Fault {
    /// The latency this fault adds to each chunk.
    fn delay(self) -> Duration {
        match self {
            Fault::Delay(delay) => delay.min(MAX_DELAY),
            _ => Duration::ZERO,
        }
    }
}

/// How the proxy ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Close: the peer reads EOF.
    Close,
    /// Reset: `SO_LINGER` 0 before closing, so the peer reads `ECONNRESET`.
    Reset,
}

/// The current fault, as every connection watches it.
///
/// A connection must not miss a cut because the fault was restored before its task looked (a
/// watch keeps only the latest value), so every Cut, Reset and Blackhole also bumps
/// `generation`: a connection accepted in an earlier generation has been severed, whatever the
/// fault is now, and ends as `ending` says (or stays silent while a blackhole lasts).
#[derive(Debug, Clone, Copy)]
struct State {
    fault: Fault,
    generation: u64,
    ending: Ending,
}

impl State {
    fn set(&mut self, fault: Fault) {
        self.fault = fault;
        let ending = match fault {
            Fault::Cut | Fault::Blackhole => Ending::Close,
            Fault::Reset => Ending::Reset,
            Fault::None | Fault::Delay(_) | Fault::Throttle { .. } => return,
        };
        self.generation += 1;
        self.ending = ending;
    }
}

/// A handle on a running proxy; clones share it. Dropping the last handle stops it.
#[derive(Clone)]
pub struct FaultProxy {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    faults: watch::Sender<State>,
    /// Set to ask the accept task to stop; dropping it (with the last handle) asks as well.
    stop: watch::Sender<bool>,
    /// Closed when the accept task has ended, with every connection it relayed.
    ended: watch::Receiver<()>,
}

/// What the handle and the accept task both read.
struct Shared {
    upstream: Mutex<SocketAddr>,
    accepted: AtomicU64,
    connections: AtomicUsize,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and relays every accepted connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            accepted: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
        });
        let (faults, faults_rx) = watch::channel(State { fault: Fault::None, generation: 0, ending: Ending::Close });
        let (stop, stop_rx) = watch::channel(false);
        let (alive, ended) = watch::channel(());
        let accept = Accept { listener, shared: shared.clone(), faults: faults_rx, tasks: JoinSet::new() };
        tokio::spawn(async move {
            accept.run(stop_rx).await;
            drop(alive);
        });
        Ok(FaultProxy { inner: Arc::new(Inner { addr, shared, faults, stop, ended }) })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The proxy as a base URL: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Sends new connections to `upstream` (a restarted server on another port, say); open ones
    /// stay where they are.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.inner.shared.upstream.lock().unwrap_or_else(|e| e.into_inner()) = upstream;
    }

    /// Replaces the current fault; it applies to open connections and to new ones.
    pub fn set(&self, fault: Fault) {
        tracing::debug!(addr = %self.inner.addr, ?fault, "proxy fault");
        self.inner.faults.send_modify(|state| state.set(fault));
    }

    /// Closes every connection and refuses new ones until restored: `set(Fault::Cut)`.
    pub fn cut(&self) {
        self.set(Fault::Cut);
    }

    /// Back to [`Fault::None`]: new connections relay normally.
    pub fn restore(&self) {
        self.set(Fault::None);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.inner.faults.borrow().fault
    }

    /// Connections relayed now.
    pub fn connections(&self) -> usize {
        self.inner.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.inner.shared.accepted.load(Ordering::SeqCst)
    }

    /// Stops listening and ends every relayed connection, for every handle; returns once they
    /// have ended.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let mut ended = self.inner.ended.clone();
        // No value is ever sent: `changed` fails once the accept task has dropped its end.
        while ended.changed().await.is_ok() {}
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.inner.addr)
            .field("fault", &self.fault())
            .field("connections", &self.connections())
            .finish()
    }
}

/// The accept task and the connections it owns.
struct Accept {
    listener: TcpListener,
    shared: Arc<Shared>,
    faults: watch::Receiver<State>,
    tasks: JoinSet<()>,
}

impl Accept {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => self.admit(stream),
                    Err(e) => {
                        tracing::debug!(error = %e, "proxy accept failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
                Some(done) = self.tasks.join_next() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "proxy connection task failed");
                    }
                }
            }
        }
        drop(self.listener);
        // Aborts every connection and waits until their sockets are closed.
        self.tasks.shutdown().await;
    }

    /// Relays a new connection, or ends it at once as the current fault says.
    fn admit(&mut self, stream: TcpStream) {
        self.shared.accepted.fetch_add(1, Ordering::SeqCst);
        let state = *self.faults.borrow();
        let upstream = match state.fault {
            Fault::Cut => return relay::end(stream, Ending::Close),
            Fault::Reset => return relay::end(stream, Ending::Reset),
            _ if self.tasks.len() >= MAX_CONNECTIONS => return relay::end(stream, Ending::Close),
            // Goes nowhere, and ends with the blackhole.
            Fault::Blackhole => None,
            _ => Some(*self.shared.upstream.lock().unwrap_or_else(|e| e.into_inner())),
        };
        let link = Link { upstream, generation: state.generation, faults: self.faults.clone() };
        let counted = Counted::new(self.shared.clone());
        self.tasks.spawn(async move {
            relay::relay(stream, link).await;
            drop(counted);
        });
    }
}

/// Resolves when the proxy is asked to stop, or every handle is gone. (A function of its own so
/// that the watch's borrow ends before `select!` holds its output across an await.)
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One relayed connection in [`FaultProxy::connections`], for as long as its task lives (an
/// aborted task drops it too).
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: Arc<Shared>) -> Counted {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        Counted(shared)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

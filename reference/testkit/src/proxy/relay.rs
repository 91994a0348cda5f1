//! One relayed connection: the upstream dialed, two pumps (client to upstream, upstream to
//! client) carrying bytes through the current fault, and a watcher that ends the connection when
//! a cut, a reset or the end of a blackhole severs it. Each pump reads into a bounded queue and
//! writes from it after the chunk's delay, paced by a throttle; an EOF is passed on as a
//! shutdown of the other side's write half, so half-closed connections behave as without the
//! proxy. An error on either side resets both: it ends this connection, never the proxy.

use super::{Ending, Fault, State, CHUNK_BYTES, QUEUE_CHUNKS};
use fsync_store::{Clock, SystemClock};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// A throttled write is cut into pieces of at most this share of a second's budget, so that the
/// pace is even rather than a burst and a long wait.
const PIECES_PER_S: u64 = 10;

/// Where a connection goes and what it watches.
pub(super) struct Link {
    /// `None`: accepted into a blackhole; it goes nowhere and ends when the blackhole does.
    pub upstream: Option<SocketAddr>,
    /// The fault generation it was accepted in (see `State`).
    pub generation: u64,
    pub faults: watch::Receiver<State>,
}

impl Link {
    /// Whether a cut, a reset or a blackhole has severed this connection.
    fn severed(&self, state: &State) -> bool {
        self.upstream.is_none() || state.generation != self.generation
    }

    /// Whether bytes must vanish now. A severed connection carries nothing more, whether it is
    /// about to end or held open by a blackhole (which severs every connection it finds and
    /// accepts new ones with no upstream).
    fn silent(&self) -> bool {
        let state = *self.faults.borrow();
        self.severed(&state)
    }
}

/// A chunk read from one side, to be written to the other once it is due.
struct Chunk {
    bytes: Vec<u8>,
    due: Instant,
}

/// Relays `client` until both sides are done, an error, or the fault severs it.
pub(super) async fn relay(mut client: TcpStream, link: Link) {
    let mut upstream = None;
    let ending = tokio::select! {
        ending = severance(link.faults.clone(), &link) => ending,
        carried = carry(&mut client, &mut upstream, &link) => match carried {
            Ok(()) => Ending::Close,
            Err(e) => {
                tracing::debug!(error = %e, "proxied connection failed");
                Ending::Reset
            }
        },
    };
    end(client, ending);
    if let Some(upstream) = upstream {
        end(upstream, ending);
    }
}

/// Closes `stream`, or resets it.
pub(super) fn end(stream: TcpStream, ending: Ending) {
    if ending == Ending::Reset {
        // With SO_LINGER 0, closing sends RST instead of FIN (and does not block).
        let _ = stream.set_zero_linger();
    }
    drop(stream);
}

/// Returns how the connection must end once the fault severs it; a severed connection stays
/// open (and silent) while a blackhole lasts.
async fn severance(mut faults: watch::Receiver<State>, link: &Link) -> Ending {
    loop {
        let state = *faults.borrow_and_update();
        if link.severed(&state) && state.fault != Fault::Blackhole {
            return state.ending;
        }
        if faults.changed().await.is_err() {
            // The proxy is gone.
            return Ending::Close;
        }
    }
}

/// Dials the upstream and carries bytes both ways until both directions are done.
async fn carry(client: &mut TcpStream, upstream: &mut Option<TcpStream>, link: &Link) -> io::Result<()> {
    let Some(addr) = link.upstream else {
        let (from, _) = client.split();
        return swallow(from).await;
    };
    let upstream = upstream.insert(TcpStream::connect(addr).await?);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::try_join!(pump(client_read, upstream_write, link), pump(upstream_read, client_write, link))?;
    Ok(())
}

/// Reads and drops everything, the EOF included: for a connection that goes nowhere.
async fn swallow(mut from: ReadHalf<'_>) -> io::Result<()> {
    let mut bytes = vec![0; CHUNK_BYTES];
    loop {
        if from.read(&mut bytes).await? == 0 {
            // The EOF vanishes too; the watcher ends the connection when the blackhole does.
            return std::future::pending().await;
        }
    }
}

/// One direction: reads `from` into a bounded queue and writes the queue to `to`.
async fn pump(from: ReadHalf<'_>, to: WriteHalf<'_>, link: &Link) -> io::Result<()> {
    let (queue, queued) = mpsc::channel(QUEUE_CHUNKS);
    tokio::try_join!(read_side(from, queue, link), write_side(to, queued, link))?;
    Ok(())
}

/// Reads chunks and queues them with their due time; dropping the queue at EOF tells the writer.
async fn read_side(mut from: ReadHalf<'_>, queue: mpsc::Sender<Chunk>, link: &Link) -> io::Result<()> {
    loop {
        let mut bytes = vec![0; CHUNK_BYTES];
        let read = from.read(&mut bytes).await?;
        if link.silent() {
            if read == 0 {
                // As in `swallow`: a silent link passes no EOF on either.
                return std::future::pending().await;
            }
            continue;
        }
        if read == 0 {
            return Ok(());
        }
        bytes.truncate(read);
        let due = SystemClock.now() + link.faults.borrow().fault.delay();
        if queue.send(Chunk { bytes, due }).await.is_err() {
            // The writer failed; its error ends the pump.
            return Ok(());
        }
    }
}

/// Writes each chunk when it is due, at the throttle's pace, then passes the EOF on.
async fn write_side(mut to: WriteHalf<'_>, mut queued: mpsc::Receiver<Chunk>, link: &Link) -> io::Result<()> {
    let mut pace = Pace { next: SystemClock.now() };
    while let Some(chunk) = queued.recv().await {
        sleep_until(chunk.due).await;
        // Bytes still in flight when a blackhole starts vanish with the rest.
        if !link.silent() {
            pace.write(&mut to, &chunk.bytes, link).await?;
        }
    }
    to.shutdown().await
}

/// When a throttled direction may write again.
struct Pace {
    next: Instant,
}

impl Pace {
    /// Writes `bytes`, in pieces spaced to the throttle's rate while there is one.
    async fn write(&mut self, to: &mut WriteHalf<'_>, mut bytes: &[u8], link: &Link) -> io::Result<()> {
        while !bytes.is_empty() {
            let fault = link.faults.borrow().fault;
            let Fault::Throttle { bytes_per_s } = fault else {
                return to.write_all(bytes).await;
            };
            let bytes_per_s = bytes_per_s.max(1);
            let piece = bytes.len().min((bytes_per_s / PIECES_PER_S).max(1) as usize);
            sleep_until(self.next).await;
            to.write_all(&bytes[..piece]).await?;
            let spent = Duration::from_secs_f64(piece as f64 / bytes_per_s as f64);
            self.next = self.next.max(SystemClock.now()) + spent;
            bytes = &bytes[piece..];
        }
        Ok(())
    }
}

//! Serving HTTP/1.1 connections on any [`Listener`], with time bounds a slow client cannot stretch:
//! a request's head must arrive within the header timeout (an idle keep-alive connection waits
//! for its next head under the same clock), and its body within the body timeout of the head. A
//! client trickling bytes therefore holds a connection for a bounded time, which the listener's
//! idle timeout alone does not give. Upgraded connections (WebSockets) are past both.

use axum::body::Body;
use axum::extract::Request;
use axum::serve::Listener;
use axum::{BoxError, Router};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Sleep;

/// How long a request may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeouts {
    /// From the moment the server waits for a head (a new connection, or the end of the previous
    /// response) to its last header line.
    pub header: Duration,
    /// From the head to the body's last byte: an 80 MiB RPC body needs at least 700 KB/s.
    pub body: Duration,
}

impl Default for RequestTimeouts {
    /// 30 s for a head (hyper's own default), 120 s for a body.
    fn default() -> Self {
        RequestTimeouts { header: Duration::from_secs(30), body: Duration::from_secs(120) }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish and returns once every connection has ended. (An upgraded connection has left with its
/// upgrade: its owner closes it.)
pub async fn serve_connections<L>(
    mut listener: L,
    router: Router,
    timeouts: RequestTimeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener,
{
    // `stop` is closed to ask every connection to finish; `done` is closed once they all have.
    let (stop, stop_asked) = watch::channel(());
    let (done, connection_open) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (router, stop, open) = (router.clone(), stop.clone(), connection_open.clone());
        tokio::spawn(async move {
            serve_one(io, router, timeouts, stop).await;
            drop(open);
        });
    }
    drop(stop_asked);
    drop(connection_open);
    done.closed().await;
}

/// One connection, until it ends or is asked to stop (then gracefully: the request in flight is
/// answered first).
async fn serve_one<I>(io: I, router: Router, timeouts: RequestTimeouts, stop: watch::Sender<()>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let body_timeout = timeouts.body;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let request = request.map(|body| Body::new(BodyDeadline::new(body, body_timeout)));
        tower_service::Service::call(&mut router.clone(), request)
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
    let mut stop_asked = pin!(stop.closed());
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Asked once; then the connection finishes its request in flight and ends.
            () = &mut stop_asked, if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A request body that fails once its deadline passes, so a handler reading it stops waiting.
struct BodyDeadline {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl BodyDeadline {
    fn new(body: Incoming, timeout: Duration) -> BodyDeadline {
        BodyDeadline { body, deadline: Box::pin(tokio::time::sleep(timeout)), timeout }
    }
}

impl HttpBody for BodyDeadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {} s of its head",
                this.timeout.as_secs_f64()
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

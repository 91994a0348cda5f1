//! turmoil behind the seams: a listener the server serves on and a dialer the client, feeds and
//! agents connect through.

use fsync_client::transport::{DialFuture, Dialer, Stream};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The port every simulated server listens on.
pub const PORT: u16 = 54321;

/// The API URL of the server host `server` (`server-0`, `server-1`).
pub fn api_url(server: &str) -> String {
    format!("http://{server}:{PORT}")
}

/// turmoil's listener as axum's.
pub struct SimListener(pub turmoil::net::TcpListener);

impl SimListener {
    pub async fn bind() -> io::Result<SimListener> {
        Ok(SimListener(turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?))
    }
}

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // Accept errors are per connection: wait a little and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Dials turmoil's hosts by name (`server-0:54321`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SimDialer;

impl Dialer for SimDialer {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move { Ok(Box::new(turmoil::net::TcpStream::connect((host, port)).await?) as Stream) })
    }
}

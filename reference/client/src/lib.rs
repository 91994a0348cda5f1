//! The fsync Rust client: typed calls for every RPC of the SQL API over PostgREST, with retries,
//! and [`ProjectStore`], the plan's frontend store (1.5) that remembers each path's version and
//! sends it as `expected_version`.
//!
//! It speaks to the reference server or to a real Supabase project alike (`/rest/v1/rpc/*` with
//! the `apikey` header and a Bearer token).

mod client;
mod error;
pub mod realtime;
pub mod retry;
mod store;
pub mod surface;
pub mod transport;

pub use client::{ClientConfig, FsyncClient};
pub use error::ClientError;
pub use retry::RetryPolicy;
pub use store::{FileState, ProjectStore, Writes};
pub use surface::{Api, Download, Reply};
pub use transport::{Dialer, TcpDialer, Transport};

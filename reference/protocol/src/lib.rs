//! Types, limits and rules that every fsync component shares: the server, the client, the agent
//! and the harness. Nothing here does I/O.
//!
//! Where the SQL API enforces a rule (path syntax, file types, size limits, the content hash),
//! the same rule lives here with the same wording, and a test compares the two sides.

pub mod api;
pub mod events;
pub mod flags;
pub mod hash;
pub mod jwt;
pub mod limits;
pub mod path;
pub mod realtime;
pub mod snapshot;
pub mod time;

pub use hash::content_hash;
pub use path::{check_path, PathProblem};

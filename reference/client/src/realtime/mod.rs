//! The Realtime side of the client: [`RealtimeSocket`], a Phoenix-channel connection to
//! `/realtime/v1/websocket`, and [`ProjectFeed`], the agent's ordered, gap-free stream of one
//! project's changes built on it.

mod feed;
mod socket;

pub use feed::{ChangeSource, FeedConfig, FeedEvent, FeedHandle, ProjectFeed};
pub use socket::{RealtimeError, RealtimeSocket};

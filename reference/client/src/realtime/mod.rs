//! The Realtime side of the client: [`RealtimeSocket`], a Phoenix-channel connection to
//! `/realtime/v1/websocket`, and [`ProjectFeed`], the agent's ordered, gap-free stream of one
//! project's changes built on it, driving a [`Sequencer`] (the decisions, with no I/O).

mod feed;
pub mod sequencer;
mod socket;

pub use feed::{ChangeSource, FeedConfig, FeedEvent, FeedHandle, ProjectFeed};
pub use sequencer::{CaughtUp, Sequencer, Step};
pub use socket::{private_join_payload, RealtimeError, RealtimeSocket};

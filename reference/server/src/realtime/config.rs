//! Realtime's settings and their defaults.

use std::time::Duration;

/// Realtime settings.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// A socket that sends nothing for this long is closed (Phoenix's default is 60 s).
    pub idle_timeout: Duration,
    /// Frames queued for one socket before it counts as too slow and is disconnected.
    pub queue_capacity: usize,
    /// Incoming frames above this size are dropped (the connection carries on).
    pub max_frame_bytes: usize,
    /// Channels one socket may join.
    pub max_channels: usize,
    /// Frames a socket may send a second (heartbeats aside), and joins among them: beyond either
    /// the frame is answered with an error and not acted on. Each is also the burst a quiet
    /// socket may save up.
    pub messages_per_s: u32,
    pub joins_per_s: u32,
    /// The longest topic a join may name (`realtime:` included): a socket holds its topics, and
    /// so does the hub, whoever joins them (public topics need only the anon key).
    pub max_topic_bytes: usize,
    /// How often a socket asks the store again whether its private channels may still be read,
    /// eight of them a round, in turn: a member removed from the project, or a container whose
    /// session was stopped, loses the channel within this (times the rounds its socket needs to
    /// come round to it), and at once on an `access_token` or at the token's expiry.
    pub reauthorize_every: Duration,
    /// `FSYNC_KEEP_CLIENT_BROADCAST` (plan 3.3): relay clients' own broadcasts. Off by default:
    /// the server authors every event.
    pub keep_client_broadcast: bool,
    /// A bug planted by the simulator (`no-resync-after-listen-loss`); `None` everywhere else.
    pub plant: Option<fsync_store::Plant>,
}

impl Default for RealtimeConfig {
    /// 60 s idle timeout, 1,024 queued frames, 1 MiB frames, 100 channels, 256-byte topics, 100
    /// frames and 10 joins a second, private channels authorized again every 30 s, client
    /// broadcasts off.
    fn default() -> Self {
        RealtimeConfig {
            idle_timeout: Duration::from_secs(60),
            queue_capacity: 1024,
            max_frame_bytes: 1024 * 1024,
            max_channels: 100,
            max_topic_bytes: 256,
            messages_per_s: 100,
            joins_per_s: 10,
            reauthorize_every: Duration::from_secs(30),
            keep_client_broadcast: false,
            plant: None,
        }
    }
}

//! What the simulator does to the model's broadcasts, and the model's planted bug: messages lost
//! silently (as Supabase's `realtime.send` may lose them), a lost and regained feed (as a LISTEN
//! connection that drops: messages lost, then every listener told to resync), and
//! `broadcast-before-commit` (an event sent for a write that then fails).

use crate::state::State;
use fsync_protocol::content_hash;
use fsync_store::data::RealtimeMessage;
use fsync_store::Plant;
use serde_json::json;
use uuid::Uuid;

/// The faults in force.
#[derive(Debug, Default)]
pub struct Faults {
    /// While set: each message is lost silently with this chance, drawn from `rng`.
    pub drop: Option<(f64, fastrand::Rng)>,
    pub plant: Option<Plant>,
    /// The last messages delivered, to send again late (duplicated and late events).
    pub recent: std::collections::VecDeque<RealtimeMessage>,
}

/// How many delivered messages are kept for a late repeat.
pub const RECENT: usize = 8;

/// What happens to one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Lose,
}

impl Faults {
    /// What happens to `message`; one delivered is kept for a late repeat.
    pub fn fate(&mut self, message: &RealtimeMessage) -> Fate {
        let dropped = self.drop.as_mut().is_some_and(|(chance, rng)| rng.f64() < *chance);
        if dropped {
            return Fate::Lose;
        }
        self.recent.push_back(message.clone());
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        Fate::Deliver
    }
}

/// `broadcast-before-commit`: the `file:update` an upsert would have sent, as if it had committed
/// at the next seq (the write then fails, and a later one takes that seq).
pub fn phantom_update(
    state: &State,
    message_id: Uuid,
    project: Uuid,
    path: &str,
    content: &str,
    file_type: &str,
) -> Option<RealtimeMessage> {
    let seq = state.projects.get(&project)?.seq + 1;
    let version = state.head(project, path).map_or(0, |h| h.version) + 1;
    let payload = json!({
        "file_path": path, "file_type": file_type, "content": content, "content_omitted": false,
        "content_hash": content_hash(content), "version": version, "seq": seq, "timestamp": "",
    });
    Some(RealtimeMessage {
        id: message_id.to_string(),
        topic: format!("project:{project}"),
        event: "file:update".into(),
        payload_json: payload.to_string(),
        private: true,
    })
}

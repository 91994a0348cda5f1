//! Session records on the model (`0008_sessions.sql`): the same answers the table gives, so two
//! simulated instances sharing the model share their sessions as two servers share a database.
//! They live in the [`crate::state::State`], where access checks read them (a container token
//! works only while its session is live) and removing a member stops their sessions.

use crate::MemStore;
use fsync_protocol::snapshot::SessionStatus;
use fsync_store::error::ApiError;
use fsync_store::sessions::{project_gone, SessionEnd, SessionRecord};
use uuid::Uuid;

impl MemStore {
    pub(crate) fn insert_session_now(&self, record: &SessionRecord, max_live: usize) -> Result<bool, ApiError> {
        let mut state = self.lock();
        if !state.projects.contains_key(&record.view.project_id) {
            return Err(project_gone(record.view.project_id));
        }
        let live = state.sessions.values().filter(|s| s.is_live() && s.started_by == record.started_by).count();
        if live >= max_live {
            return Ok(false);
        }
        state.sessions.insert(record.view.id, record.clone());
        Ok(true)
    }

    pub(crate) fn save_session_now(&self, record: &SessionRecord) {
        let mut state = self.lock();
        // An ended record stays ended (`save_session` in `pg/sessions.rs`).
        let Some(saved) = state.sessions.get_mut(&record.view.id).filter(|s| s.is_live() || !record.is_live()) else {
            return;
        };
        let ends = saved.is_live() && !record.is_live();
        saved.view = record.view.clone();
        saved.ended_at_s = record.ended_at_s;
        if ends {
            state.ended.push((record.view.id, end_of(record.view.status)));
            self.deliver_ended(&mut state);
        }
    }

    pub(crate) fn session_now(&self, id: Uuid) -> Option<SessionRecord> {
        self.lock().sessions.get(&id).cloned()
    }

    pub(crate) fn fail_sessions_of_now(&self, instance: &str, reason: &str, now_s: u64) -> Vec<Uuid> {
        let mut state = self.lock();
        let state = &mut *state;
        for record in state.sessions.values_mut().filter(|s| s.instance == instance && s.is_live()) {
            record.view.status = SessionStatus::Failed;
            record.view.reason = Some(reason.to_owned());
            record.ended_at_s = Some(now_s);
            state.ended.push((record.view.id, SessionEnd::Failed));
        }
        let failed = state.ended.iter().map(|(id, _)| *id).collect();
        self.deliver_ended(state);
        failed
    }

    pub(crate) fn prune_sessions_now(&self, ended_before_s: u64) -> u64 {
        let sessions = &mut self.lock().sessions;
        let before = sessions.len();
        sessions.retain(|_, s| s.ended_at_s.is_none_or(|ended| ended >= ended_before_s));
        (before - sessions.len()) as u64
    }
}

/// How a record that ends with `status` ended.
fn end_of(status: SessionStatus) -> SessionEnd {
    match status {
        SessionStatus::Failed => SessionEnd::Failed,
        _ => SessionEnd::Stopped,
    }
}

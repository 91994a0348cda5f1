//! An executable model of the fsync SQL API: the whole read/write API (versions, tombstones,
//! compare-and-set, no-op writes, `seq`, bulk atomicity, `list_changes_since`, membership and
//! roles, the validation errors) in memory, behind the same [`Store`] trait through which the
//! server reaches PostgreSQL — so the reference server runs on either, and the simulator can run
//! it with no database.
//!
//! The model is only worth trusting because the differential property tests
//! (`tests/it/differential.rs`) hold it to PostgreSQL: same results, same errors, same final
//! state, for random operation sequences.

pub mod args;
mod binary;
mod bulk;
pub mod faults;
mod files;
mod legacy;
mod members;
mod platform;
mod read;
mod sessions;
pub mod snapshots;
pub mod state;
pub mod storage;
mod topics;

use fsync_store::data::{
    Delivery, ReadOutput, ReadQuery, RealtimeMessage, RpcCall, RpcOutput, Store, TopicAccess, WriteQuery,
    WRITABLE_RELATION,
};
use fsync_store::error::ApiError;
use fsync_store::Ids;
use fsync_store::RequestAuth;
use state::{Caller, Outcome, State};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages buffered for one listener.
const LISTEN_QUEUE: usize = 4096;

/// The in-memory store.
#[derive(Default)]
pub struct MemStore {
    state: Mutex<State>,
    listeners: Mutex<Vec<Listener>>,
    /// What the simulator does to broadcasts (nothing, unless it says so).
    faults: Mutex<faults::Faults>,
    /// Calls per (function, the caller's `session_id` claim): what a container asked for.
    calls: Mutex<BTreeMap<(String, String), u64>>,
}

/// One instance listening for broadcasts (a LISTEN connection).
struct Listener {
    tx: mpsc::Sender<Delivery>,
    /// Lost: it gets nothing until regained (then it is told to resync).
    lost: bool,
}

impl MemStore {
    pub fn new() -> Self {
        MemStore::default()
    }

    /// A store that draws row, project and message ids from `ids` (seeded in tests and the
    /// simulator, so a run gives the same ids twice).
    pub fn with_ids(ids: Arc<dyn Ids>) -> Self {
        let store = MemStore::default();
        store.lock().ids = state::IdSource(ids);
        store
    }

    /// Changes the state directly (tests seed users and projects with known ids this way).
    pub fn seed(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
    }

    /// The same store with a planted bug (`broadcast-before-commit`; the simulator's `--plant`).
    pub fn with_plant(self, plant: Option<fsync_store::Plant>) -> Self {
        self.faults().plant = plant;
        self
    }

    /// From now on, each broadcast is lost silently with `chance` (drawn from `seed`), as
    /// Supabase's `realtime.send` may lose them; `None` stops it.
    pub fn drop_broadcasts(&self, chance: Option<f64>, seed: u64) {
        self.faults().drop = chance.map(|c| (c, fastrand::Rng::with_seed(seed)));
    }

    /// Delivers again the message `back` deliveries ago (0: the last one): a duplicated, late
    /// event, as a network may hand one over.
    pub fn repeat_late(&self, back: usize) {
        let message = {
            let faults = self.faults();
            faults.recent.iter().rev().nth(back).cloned()
        };
        if let Some(message) = message {
            self.to_listeners([Delivery::Message(message)]);
        }
    }

    /// The `pick`-th live listener (modulo how many there are; in the order they started) gets
    /// nothing until [`MemStore::regain_feed`]: one instance's LISTEN connection lost.
    pub fn lose_feed(&self, pick: usize) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|l| !l.tx.is_closed());
        let count = listeners.len();
        if let Some(listener) = listeners.get_mut(pick % count.max(1)) {
            listener.lost = true;
        }
    }

    /// Every lost feed is back, and its listener is told to resync (as a LISTEN loop that
    /// reconnects does): what was lost meanwhile must be caught up by seq.
    pub fn regain_feed(&self) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for listener in listeners.iter_mut().filter(|l| l.lost) {
            listener.lost = false;
            let _ = listener.tx.try_send(Delivery::Resync);
        }
    }

    /// How many times each container session called `function` (by its `session_id` claim), as
    /// a database's statement statistics would show.
    pub fn calls_by_session(&self, function: &str) -> BTreeMap<String, u64> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().filter(|((f, _), _)| f == function).map(|((_, s), n)| (s.clone(), *n)).collect()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, faults::Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many instances the store delivers broadcasts to (a stopped instance no longer counts).
    pub fn listeners(&self) -> usize {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|l| !l.tx.is_closed());
        listeners.len()
    }

    /// Reads the state in place, under its lock (no copy: the simulator's checkers look often).
    pub fn inspect<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// A copy of the whole state.
    pub fn snapshot(&self) -> State {
        self.lock().clone()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `deliveries` to every listener whose feed is not lost, in order. A listener that
    /// fell 4,096 behind loses them, as a LISTEN connection that drops does; consumers notice the
    /// seq gap.
    fn to_listeners(&self, deliveries: impl IntoIterator<Item = Delivery>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|l| !l.tx.is_closed());
        for delivery in deliveries {
            for listener in listeners.iter().filter(|l| !l.lost) {
                let _ = listener.tx.try_send(delivery.clone());
            }
        }
    }

    /// Hands committed messages to every listener, in commit order (called under the state lock),
    /// but those the simulator's faults lose.
    fn deliver(&self, messages: Vec<RealtimeMessage>) {
        let kept = messages.into_iter().filter(|m| self.faults().fate(m) != faults::Fate::Lose);
        self.to_listeners(kept.map(Delivery::Message).collect::<Vec<_>>());
    }

    /// Notifies every listener of the sessions whose record ended in the call just made (called
    /// under the state lock, after its messages: commit order).
    pub(crate) fn deliver_ended(&self, state: &mut State) {
        self.to_listeners(state.ended.drain(..).map(|(session, end)| Delivery::SessionEnded { session, end }));
    }

    /// Runs one RPC against the state; the same dispatch the server's PostgreSQL store does by name.
    pub fn call(&self, auth: &RequestAuth, call: &RpcCall) -> Result<RpcOutput, ApiError> {
        let signature = args::resolve(&call.function, &call.args)?;
        if auth.role == "anon" {
            return Err(ApiError::from_sqlstate(
                "42501",
                &format!("permission denied for function {}", signature.name),
                None,
                None,
                true,
            ));
        }
        let writes = !matches!(signature.name, "list_current_files" | "list_changes_since" | "list_project_members");
        if call.read_only && writes {
            return Err(ApiError::from_sqlstate(
                "25006",
                "cannot execute SELECT FOR UPDATE in a read-only transaction",
                None,
                None,
                true,
            ));
        }
        let a = args::bind(signature, &call.args)?;
        if let Some(session) = auth.claims.get("session_id").and_then(serde_json::Value::as_str) {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            *calls.entry((signature.name.to_owned(), session.to_owned())).or_default() += 1;
        }
        let caller = Caller { role: auth.role.clone(), claims: auth.claims.clone() };
        let mut state = self.lock();
        let outcome = match signature.name {
            "upsert_project_file" => state.upsert_project_file(
                &caller,
                a.uuid("project_uuid"),
                a.text("p_file_path").as_deref(),
                a.text("p_content").as_deref(),
                a.text("p_file_type").as_deref(),
                a.int("expected_version"),
            ),
            "upsert_project_binary" => state.upsert_project_binary(
                &caller,
                a.uuid("project_uuid"),
                a.text("p_file_path").as_deref(),
                a.text("p_content_hash").as_deref(),
                // `p_file_type text DEFAULT 'binary'`: only an omitted argument takes the default.
                if call.args.contains_key("p_file_type") { a.text("p_file_type") } else { Some("binary".into()) }
                    .as_deref(),
                a.int("expected_version"),
            ),
            "delete_project_file" => state.delete_project_file(
                &caller,
                a.uuid("project_uuid"),
                a.text("p_file_path").as_deref(),
                a.int("expected_version"),
            ),
            "list_current_files" => state.list_current_files(&caller, a.uuid("project_uuid")),
            "bulk_upsert_project_files" => {
                state.bulk_upsert_project_files(&caller, a.uuid("project_uuid"), a.jsonb("files").as_ref())
            }
            "list_changes_since" => state.list_changes_since(&caller, a.uuid("project_uuid"), a.bigint("since_seq")),
            "ensure_user_profile" => {
                state.ensure_user_profile(&caller, a.uuid("p_user_id"), a.text("p_email"), a.text("p_display_name"))
            }
            "create_project" => state.create_project(&caller, a.text("p_name"), a.uuid("p_owner")),
            "add_project_member" => {
                state.add_project_member(&caller, a.uuid("project_uuid"), a.uuid("p_user_id"), a.text("p_role"))
            }
            "remove_project_member" => {
                state.remove_project_member(&caller, a.uuid("project_uuid"), a.uuid("p_user_id"))
            }
            "list_project_members" => state.list_project_members(&caller, a.uuid("project_uuid")),
            other => unreachable!("{other} has a signature but no implementation"),
        };
        if outcome.is_err()
            && signature.name == "upsert_project_file"
            && self.faults().plant == Some(fsync_store::Plant::BroadcastBeforeCommit)
        {
            let (project, path, content, file_type) =
                (a.uuid("project_uuid"), a.text("p_file_path"), a.text("p_content"), a.text("p_file_type"));
            if let (Some(project), Some(path), Some(content), Some(file_type)) = (project, path, content, file_type) {
                let id = state.ids.0.uuid();
                self.deliver(
                    faults::phantom_update(&state, id, project, &path, &content, &file_type).into_iter().collect(),
                );
            }
        }
        let Outcome { result, messages } = outcome.inspect_err(|_| state.ended.clear())?;
        self.deliver(messages);
        self.deliver_ended(&mut state);
        drop(state);
        Ok(RpcOutput::Json(result.to_string()))
    }
}

impl Store for MemStore {
    async fn rpc(&self, auth: &RequestAuth, call: RpcCall) -> Result<RpcOutput, ApiError> {
        self.call(auth, &call)
    }

    async fn read(&self, auth: &RequestAuth, query: ReadQuery) -> Result<ReadOutput, ApiError> {
        read::read(&self.lock(), auth, &query)
    }

    async fn write(&self, auth: &RequestAuth, query: WriteQuery) -> Result<ReadOutput, ApiError> {
        if query.relation != WRITABLE_RELATION {
            return Err(query.not_writable());
        }
        let columns = read::column_names(&query.relation).unwrap_or_default();
        query.check_columns(|c| columns.contains(&c))?;
        if auth.role == "anon" {
            let message = format!("permission denied for view {}", query.relation);
            return Err(ApiError::from_sqlstate("42501", &message, None, None, true));
        }
        let caller = Caller { role: auth.role.clone(), claims: auth.claims.clone() };
        let mut state = self.lock();
        let Outcome { result, messages } = state.legacy_write(&caller, &query)?;
        self.deliver(messages);
        drop(state);
        let count = result.as_array().map_or(0, Vec::len) as u64;
        Ok(ReadOutput { rows_json: result.to_string(), count })
    }

    async fn authorize_topic(&self, auth: &RequestAuth, topic: &str) -> Result<TopicAccess, ApiError> {
        let caller = Caller { role: auth.role.clone(), claims: auth.claims.clone() };
        let (read, write) = self.lock().topic_access(&caller, topic);
        Ok(TopicAccess { read, write })
    }

    async fn publish(&self, auth: &RequestAuth, message: &RealtimeMessage) -> Result<(), ApiError> {
        let caller = Caller { role: auth.role.clone(), claims: auth.claims.clone() };
        let state = self.lock();
        if message.private && !state.topic_access(&caller, &message.topic).1 {
            return Err(ApiError::from_sqlstate(
                "42501",
                "new row violates row-level security policy for table \"messages\"",
                None,
                None,
                true,
            ));
        }
        self.deliver(vec![message.clone()]);
        Ok(())
    }

    async fn listen(&self) -> Result<mpsc::Receiver<Delivery>, ApiError> {
        let (tx, rx) = mpsc::channel(LISTEN_QUEUE);
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(Listener { tx, lost: false });
        Ok(rx)
    }

    async fn health(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

//! The data port: the seam between the HTTP surface and the source of truth.
//!
//! The PostgREST-compatible endpoints reach the data only through [`Store`]: an RPC call by name
//! with named JSON arguments, and a filtered read of a relation, both as a verified caller. The
//! PostgreSQL implementation (`fsync_reference::pg::PgStore`) runs them as PostgREST does; the
//! in-memory model (`fsync_model::MemStore`) stands in for it in the simulator.

use crate::caller::RequestAuth;
use crate::error::{ApiError, StatusCode};
use serde_json::{Map, Value};
use std::future::Future;
use tokio::sync::mpsc;

/// A call of `POST /rest/v1/rpc/{function}` (or `GET` with query arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub function: String,
    pub args: Map<String, Value>,
    /// `GET` calls run in a read-only transaction, as in PostgREST.
    pub read_only: bool,
}

/// What an RPC returned.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcOutput {
    /// A JSON document, as text, ready to send.
    Json(String),
    /// The function returns `void`: `204 No Content`.
    NoContent,
}

/// A comparison in a read filter (`col=op.value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Is,
    In,
}

/// One `column=[not.]op.value` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    pub negated: bool,
    /// The value as written; for `in`, the list's items.
    pub values: Vec<String>,
}

/// One `order=` term.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    pub column: String,
    pub descending: bool,
    /// `Some(true)` for `nullsfirst`, `Some(false)` for `nullslast`.
    pub nulls_first: Option<bool>,
}

/// A read of `GET /rest/v1/{relation}`: the subset of PostgREST's query grammar that
/// supabase-js's `.from(..).select(..).eq(..).order(..).limit(..)` produces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadQuery {
    pub relation: String,
    /// `None` selects every column.
    pub columns: Option<Vec<String>>,
    pub filters: Vec<Filter>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

impl ReadQuery {
    /// The error for a relation that is not exposed (PostgREST's `PGRST205`).
    pub fn unknown_relation(&self) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "PGRST205",
            format!("Could not find the table 'public.{}' in the schema cache", self.relation),
        )
    }

    /// Checks that every column the query names (selected, filtered or ordered) exists, failing
    /// on the first that does not as PostgreSQL does (`42703`).
    pub fn check_columns(&self, exists: impl Fn(&str) -> bool) -> Result<(), ApiError> {
        let named = self
            .columns
            .iter()
            .flatten()
            .chain(self.filters.iter().map(|f| &f.column))
            .chain(self.order.iter().map(|o| &o.column));
        check_columns(&self.relation, named.map(String::as_str), exists)
    }
}

/// Fails on the first of `named` that is not a column of `relation`, as PostgreSQL does (`42703`).
fn check_columns<'a>(
    relation: &str,
    mut named: impl Iterator<Item = &'a str>,
    exists: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    match named.find(|column| !exists(column)) {
        Some(missing) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "42703", format!("column {relation}.{missing} does not exist")))
        }
        None => Ok(()),
    }
}

/// Rows of a read, as a JSON array in text, and how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOutput {
    pub rows_json: String,
    pub count: u64,
}

/// The relation that takes table writes: the compatibility view of unmigrated clients, whose
/// triggers route each row into the versioned writes (`0007_legacy_writes.sql`). Every other
/// relation changes only through the RPCs.
pub const WRITABLE_RELATION: &str = "legacy_project_files";

/// A table write of `POST`, `PATCH` or `DELETE /rest/v1/{relation}`, as supabase-js's
/// `.insert/.upsert/.update/.delete` send it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteQuery {
    pub relation: String,
    pub kind: WriteKind,
    /// The request's `Prefer` header as sent (`resolution=merge-duplicates` makes an insert an
    /// upsert; `resolution=ignore-duplicates` skips rows that conflict).
    pub prefer: String,
}

/// What a table write does.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteKind {
    /// `POST`: these rows (JSON objects of column → value).
    Insert { rows: Vec<Map<String, Value>> },
    /// `PATCH`: these columns set on every row the filters match.
    Update { set: Map<String, Value>, filters: Vec<Filter> },
    /// `DELETE`: every row the filters match.
    Delete { filters: Vec<Filter> },
}

impl WriteKind {
    /// The HTTP method that asks for it.
    pub fn method(&self) -> &'static str {
        match self {
            WriteKind::Insert { .. } => "POST",
            WriteKind::Update { .. } => "PATCH",
            WriteKind::Delete { .. } => "DELETE",
        }
    }
}

impl WriteQuery {
    /// The error for a relation that takes no table writes.
    pub fn not_writable(&self) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "FSYNC405",
            format!("public.{} takes no table writes; files change through the RPCs", self.relation),
        )
        .with_hint(format!("unmigrated clients write through public.{WRITABLE_RELATION}"))
    }

    /// Checks that every column the write names exists, failing on the first that does not as
    /// PostgreSQL does (`42703`).
    pub fn check_columns(&self, exists: impl Fn(&str) -> bool) -> Result<(), ApiError> {
        check_columns(&self.relation, self.columns().into_iter(), exists)
    }

    /// Every column the write names: the rows' keys, the set columns, the filtered columns.
    pub fn columns(&self) -> Vec<&str> {
        match &self.kind {
            WriteKind::Insert { rows } => rows.iter().flat_map(|r| r.keys()).map(String::as_str).collect(),
            WriteKind::Update { set, filters } => {
                set.keys().map(String::as_str).chain(filters.iter().map(|f| f.column.as_str())).collect()
            }
            WriteKind::Delete { filters } => filters.iter().map(|f| f.column.as_str()).collect(),
        }
    }
}

/// A Realtime broadcast as stored in `realtime.messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeMessage {
    pub id: String,
    /// The channel name without the `realtime:` prefix (`project:<uuid>`).
    pub topic: String,
    pub event: String,
    /// The payload as JSON text.
    pub payload_json: String,
    pub private: bool,
}

/// What [`Store::listen`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A committed broadcast, in commit order.
    Message(RealtimeMessage),
    /// Broadcasts may have been missed (the store lost and regained its feed): every consumer
    /// must catch up by seq. (Session ends may have been missed too: the orchestrator reads the
    /// records of the sessions it runs again.)
    Resync,
    /// A live session's record ended, in commit order with the broadcasts: nothing committed
    /// after it may reach the session's agent.
    SessionEnded { session: uuid::Uuid, end: crate::sessions::SessionEnd },
}

/// What a caller may do on a private Realtime topic, as the `realtime.messages` policies decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicAccess {
    pub read: bool,
    pub write: bool,
}

/// The source of truth as the HTTP surface sees it.
pub trait Store: Send + Sync + 'static {
    /// Calls an RPC function as `auth`, in one transaction.
    fn rpc(&self, auth: &RequestAuth, call: RpcCall) -> impl Future<Output = Result<RpcOutput, ApiError>> + Send;

    /// Reads rows of a relation as `auth`, under its row level security.
    fn read(&self, auth: &RequestAuth, query: ReadQuery) -> impl Future<Output = Result<ReadOutput, ApiError>> + Send;

    /// Writes rows of [`WRITABLE_RELATION`] as `auth`, in one transaction; the rows written (as
    /// they are after the write) and how many.
    fn write(&self, auth: &RequestAuth, query: WriteQuery)
        -> impl Future<Output = Result<ReadOutput, ApiError>> + Send;

    /// Decides what `auth` may do on private topic `topic` (without `realtime:`), by evaluating
    /// the `realtime.messages` policies the way Supabase Realtime does.
    fn authorize_topic(
        &self,
        auth: &RequestAuth,
        topic: &str,
    ) -> impl Future<Output = Result<TopicAccess, ApiError>> + Send;

    /// Stores a client broadcast as `auth` (policies apply on private topics) and delivers it
    /// through [`Store::listen`] to every instance.
    fn publish(
        &self,
        auth: &RequestAuth,
        message: &RealtimeMessage,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Every committed broadcast, in commit order, from the moment the returned future resolves;
    /// a [`Delivery::Resync`] wherever some may have been missed.
    fn listen(&self) -> impl Future<Output = Result<mpsc::Receiver<Delivery>, ApiError>> + Send;

    /// Whether the store can serve requests.
    fn health(&self) -> impl Future<Output = Result<(), ApiError>> + Send;
}

//! The PostgreSQL store: RPC calls and reads run as PostgREST runs them, one transaction per
//! request that first sets `role` and `request.jwt.claims`.

pub mod bootstrap;
pub mod migrate;
mod platform;
pub mod realtime;
pub mod schema;
mod sessions;
mod snapshots;
pub mod sql;

use axum::http::StatusCode;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use fsync_store::data::{
    ReadOutput, ReadQuery, RealtimeMessage, RpcCall, RpcOutput, Store, TopicAccess, WriteKind, WriteQuery,
    WRITABLE_RELATION,
};
use fsync_store::error::ApiError;
use fsync_store::{Ids, RequestAuth, SystemIds};
use schema::SchemaCache;
use serde_json::Value;
use std::sync::{Arc, RwLock};
use tokio_postgres::NoTls;

/// Connections per server instance.
pub const POOL_SIZE: usize = 16;

/// The store over one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    schema: Arc<RwLock<Arc<SchemaCache>>>,
    /// Ids for the rows the server writes itself (Realtime's authorization probes).
    ids: Arc<dyn Ids>,
}

impl PgStore {
    /// Connects to `url`, applies the migrations and loads the schema cache.
    pub async fn connect(url: &str) -> anyhow::Result<PgStore> {
        use anyhow::Context;
        let config: tokio_postgres::Config = url.parse().context("parse database URL")?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(POOL_SIZE).build().context("build the connection pool")?;
        let mut client = pool.get().await.context("connect to the database")?;
        migrate::migrate(&mut client).await?;
        let cache = SchemaCache::load(&**client).await.context("load the schema cache")?;
        drop(client);
        Ok(PgStore { pool, config, schema: Arc::new(RwLock::new(Arc::new(cache))), ids: Arc::new(SystemIds) })
    }

    /// Draws the ids the server writes itself from `ids`.
    pub fn with_ids(mut self, ids: Arc<dyn Ids>) -> PgStore {
        self.ids = ids;
        self
    }

    /// Reloads the schema cache (after DDL outside the migrations).
    pub async fn reload_schema(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        let cache = SchemaCache::load(&**client).await?;
        *self.schema.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cache);
        Ok(())
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn schema(&self) -> Arc<SchemaCache> {
        self.schema.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `statement` with `params` in a request transaction as `auth`, returning the first row.
    async fn run_as(
        &self,
        auth: &RequestAuth,
        read_only: bool,
        method: &str,
        path: &str,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, ApiError> {
        let mut rows = self.query_as(auth, read_only, (method, path, NO_HEADERS), statement, params).await?;
        if rows.is_empty() {
            return Err(ApiError::internal("the statement returned no row"));
        }
        Ok(rows.swap_remove(0))
    }

    /// Runs `statement` with `params` in one request transaction as `auth` (role,
    /// `request.jwt.claims`, and the request's method, path and headers (a JSON object) set as
    /// PostgREST sets them, so row level security and triggers see them), and returns its rows.
    pub async fn query_as(
        &self,
        auth: &RequestAuth,
        read_only: bool,
        (method, path, headers): (&str, &str, &str),
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        let prepare = |sql: &'static str| client.prepare_cached(sql);
        let begin = prepare(if read_only { "START TRANSACTION READ ONLY" } else { "START TRANSACTION READ WRITE" });
        let (begin, settings, commit) = tokio::join!(begin, prepare(SETTINGS), prepare("COMMIT"));
        let (begin, settings, commit) = (begin.map_err(db)?, settings.map_err(db)?, commit.map_err(db)?);
        let call = client.prepare_cached(statement).await.map_err(db)?;
        let claims = auth.claims_json();
        let setting_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&auth.role, &claims, &method, &path, &headers];
        // All four statements go out before any answer comes back: one round trip, and a lock the call
        // takes (a project's write lock) is held only while PostgreSQL works, never across a
        // round trip to this server. When a statement fails, the transaction is aborted and the
        // COMMIT queued behind it ends it as a rollback.
        let (began, set, rows, committed) = tokio::join!(
            client.execute(&begin, &[]),
            client.query_one(&settings, &setting_params),
            client.query(&call, params),
            client.execute(&commit, &[]),
        );
        began.map_err(db)?;
        set.map_err(db)?;
        let rows = rows.map_err(db)?;
        committed.map_err(db)?;
        Ok(rows)
    }
}

/// Bind parameters of a read or a write, owned.
fn boxed(params: Vec<sql::Param>) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    params
        .into_iter()
        .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match p {
                sql::Param::Text(s) => Box::new(s),
                sql::Param::List(v) => Box::new(v),
                sql::Param::Json(v) => Box::new(v),
            }
        })
        .collect()
}

fn refs(
    owned: &[Box<dyn tokio_postgres::types::ToSql + Sync + Send>],
) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    owned.iter().map(|b| &**b as &(dyn tokio_postgres::types::ToSql + Sync)).collect()
}

/// The rows (a JSON array in text) and count a read or write statement returns.
fn rows_output(row: &tokio_postgres::Row) -> ReadOutput {
    let count: i64 = row.get(1);
    ReadOutput { rows_json: row.get(0), count: count.max(0) as u64 }
}

/// The request's role and claims, set for the transaction as PostgREST sets them.
const SETTINGS: &str = "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
        set_config('request.method', $3, true), set_config('request.path', $4, true),
        set_config('request.headers', $5, true)";

/// The request headers a statement sees when none of them matters to it.
pub const NO_HEADERS: &str = "{}";

/// A driver error of an authenticated request, as the API answers it.
fn db(error: tokio_postgres::Error) -> ApiError {
    db_error(error, true)
}

/// An error of a statement the server runs on its own connection (no caller's rights apply).
fn internal(error: tokio_postgres::Error) -> ApiError {
    db_error(error, false)
}

/// Maps a driver error to the API error PostgREST would answer.
pub fn db_error(error: tokio_postgres::Error, authenticated: bool) -> ApiError {
    match error.as_db_error() {
        Some(db) => ApiError::from_sqlstate(db.code().code(), db.message(), db.detail(), db.hint(), authenticated),
        None if error.is_closed() => ApiError::unavailable(error),
        None => ApiError::internal(error),
    }
}

impl Store for PgStore {
    async fn rpc(&self, auth: &RequestAuth, call: RpcCall) -> Result<RpcOutput, ApiError> {
        let schema = self.schema();
        let given: Vec<&str> = call.args.keys().map(String::as_str).collect();
        let overloads = schema.functions.get(&call.function).map(Vec::as_slice).unwrap_or(&[]);
        let Some(function) = overloads.iter().find(|f| f.accepts(given.iter().copied())) else {
            let mut error = ApiError::new(
                StatusCode::NOT_FOUND,
                "PGRST202",
                format!(
                    "Could not find the function public.{}({}) in the schema cache",
                    call.function,
                    given.join(", ")
                ),
            );
            if let Some(candidate) = overloads.first() {
                error = error.with_hint(format!("Perhaps you meant to call the function {}", candidate.signature()));
            }
            return Err(error);
        };
        let statement = sql::rpc_statement(function, &given);
        let args = Value::Object(call.args);
        let method = if call.read_only { "GET" } else { "POST" };
        let path = format!("/rpc/{}", call.function);
        let row = self.run_as(auth, call.read_only, method, &path, &statement, &[&args]).await?;
        match function.returns {
            schema::ReturnKind::Void => Ok(RpcOutput::NoContent),
            _ => Ok(RpcOutput::Json(row.get::<_, Option<String>>(0).unwrap_or_else(|| "null".to_owned()))),
        }
    }

    async fn read(&self, auth: &RequestAuth, query: ReadQuery) -> Result<ReadOutput, ApiError> {
        let schema = self.schema();
        let Some(columns) = schema.relations.get(&query.relation) else { return Err(query.unknown_relation()) };
        let column_type = |name: &str| columns.iter().find(|(c, _)| c == name).map(|(_, t)| t.clone());
        query.check_columns(|c| column_type(c).is_some())?;
        let (statement, params) = sql::read_statement(
            &query.relation,
            query.columns.as_deref(),
            &query.filters,
            &query.order,
            query.limit,
            query.offset,
            |c| column_type(c).unwrap_or_else(|| "text".to_owned()),
        );
        let owned = boxed(params);
        let path = format!("/{}", query.relation);
        let row = self.run_as(auth, true, "GET", &path, &statement, &refs(&owned)).await?;
        Ok(rows_output(&row))
    }

    async fn write(&self, auth: &RequestAuth, query: WriteQuery) -> Result<ReadOutput, ApiError> {
        if query.relation != WRITABLE_RELATION {
            return Err(query.not_writable());
        }
        if matches!(&query.kind, WriteKind::Insert { rows } if rows.is_empty()) {
            // No rows: nothing to write (PostgREST answers an empty insert the same way).
            return Ok(ReadOutput { rows_json: "[]".to_owned(), count: 0 });
        }
        let schema = self.schema();
        let Some(columns) = schema.relations.get(&query.relation) else { return Err(query.not_writable()) };
        let column_type = |name: &str| columns.iter().find(|(c, _)| c == name).map(|(_, t)| t.clone());
        query.check_columns(|c| column_type(c).is_some())?;
        let (statement, params) =
            sql::write_statement(&query.relation, &query.kind, |c| column_type(c).unwrap_or_else(|| "text".to_owned()));
        let owned = boxed(params);
        let (method, path) = (query.kind.method(), format!("/{}", query.relation));
        let headers = serde_json::json!({"prefer": query.prefer}).to_string();
        let rows = self.query_as(auth, false, (method, &path, &headers), &statement, &refs(&owned)).await?;
        let row = rows.first().ok_or_else(|| ApiError::internal("the write returned no row"))?;
        Ok(rows_output(row))
    }

    async fn authorize_topic(&self, auth: &RequestAuth, topic: &str) -> Result<TopicAccess, ApiError> {
        self.authorize_topic_pg(auth, topic).await
    }

    async fn publish(&self, auth: &RequestAuth, message: &RealtimeMessage) -> Result<(), ApiError> {
        self.publish_pg(auth, message).await
    }

    async fn listen(&self) -> Result<tokio::sync::mpsc::Receiver<fsync_store::data::Delivery>, ApiError> {
        self.listen_pg().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(ApiError::unavailable)?;
        client.query_one("SELECT 1", &[]).await.map_err(ApiError::unavailable)?;
        Ok(())
    }
}

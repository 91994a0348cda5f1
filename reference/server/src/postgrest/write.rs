//! Table writes — `POST`, `PATCH` and `DELETE /rest/v1/{relation}` — as supabase-js's
//! `.insert/.upsert/.update/.delete` send them, for the compatibility view unmigrated clients
//! write through (`FSYNC_USE_RPC` off). The database routes each row into the versioned writes
//! (`0007_legacy_writes.sql`); this layer only parses the request and shapes the answer as
//! PostgREST does.

use super::{answered, check_profile, json_response, query};
use crate::auth::authenticate;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fsync_store::data::{Filter, ReadQuery, Store, WriteKind, WriteQuery};
use fsync_store::error::ApiError;
use serde_json::{Map, Value};

/// The columns an upsert's `on_conflict` may name: the view's key, one live file per path.
const CONFLICT_KEY: [&str; 2] = ["path", "project_id"];

/// `POST /rest/v1/{relation}`: a JSON object or array of objects to insert; with
/// `Prefer: resolution=merge-duplicates` an upsert, with `resolution=ignore-duplicates` an
/// insert that skips rows already there.
pub async fn insert<S: Store>(
    State(state): State<AppState<S>>,
    Path(relation): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = |_: ReadQuery| Ok(WriteKind::Insert { rows: check_conflict_target(&pairs).and_then(|()| rows(&body))? });
    write(&state, &headers, relation, &pairs, kind).await
}

/// `PATCH /rest/v1/{relation}?filters`: a JSON object of the columns to set on every matched row.
pub async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Path(relation): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = |parsed| match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(set)) => Ok(WriteKind::Update { set, filters: filters(parsed, "UPDATE")? }),
        Ok(_) => Err(ApiError::invalid_body("a PATCH body is a JSON object of the columns to set")),
        Err(e) => Err(ApiError::invalid_body(e.to_string())),
    };
    write(&state, &headers, relation, &pairs, kind).await
}

/// `DELETE /rest/v1/{relation}?filters`.
pub async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Path(relation): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let kind = |parsed| Ok(WriteKind::Delete { filters: filters(parsed, "DELETE")? });
    write(&state, &headers, relation, &pairs, kind).await
}

/// Runs a write as the caller — `kind` makes it from the request's parsed query string — and
/// answers as PostgREST: the written rows with `Prefer: return=representation` (201 for an
/// insert, else 200), otherwise no body (201 or 204).
async fn write<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    relation: String,
    pairs: &[(String, String)],
    kind: impl FnOnce(ReadQuery) -> Result<WriteKind, ApiError>,
) -> Response {
    let started = state.sources.now();
    let counted = relation.clone();
    let result = async {
        check_profile(headers, "content-profile")?;
        let auth = authenticate(headers, &state.secret, state.sources.wall_s())?;
        let parsed = query::parse(&relation, pairs)?;
        let selected = parsed.columns.clone();
        let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let kind = kind(parsed)?;
        let created = matches!(kind, WriteKind::Insert { .. });
        let output = state.store.write(&auth, WriteQuery { relation, kind, prefer: prefer.clone() }).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        if !prefer.contains("return=representation") {
            return Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT }.into_response());
        }
        let rows: Vec<Map<String, Value>> = serde_json::from_str(&output.rows_json).map_err(ApiError::internal)?;
        let rows: Vec<Value> = rows.into_iter().map(|row| Value::Object(project(row, selected.as_deref()))).collect();
        Ok::<_, ApiError>(json_response(status, Value::Array(rows).to_string(), None))
    }
    .await;
    answered(state, &counted, started, result)
}

/// A POST body's rows: one JSON object, or an array of them.
fn rows(body: &[u8]) -> Result<Vec<Map<String, Value>>, ApiError> {
    let not_rows = || ApiError::invalid_body("the body is a JSON object or an array of JSON objects");
    match serde_json::from_slice::<Value>(body).map_err(|e| ApiError::invalid_body(e.to_string()))? {
        Value::Object(row) => Ok(vec![row]),
        Value::Array(items) => {
            items.into_iter().map(|v| if let Value::Object(row) = v { Ok(row) } else { Err(not_rows()) }).collect()
        }
        _ => Err(not_rows()),
    }
}

/// An `on_conflict` must name the view's key, as a unique constraint must match in PostgreSQL.
fn check_conflict_target(pairs: &[(String, String)]) -> Result<(), ApiError> {
    let Some((_, target)) = pairs.iter().find(|(k, _)| k == "on_conflict") else { return Ok(()) };
    let mut columns: Vec<&str> = target.split(',').map(str::trim).collect();
    columns.sort_unstable();
    if columns == CONFLICT_KEY {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "42P10",
        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
    )
    .with_hint("on_conflict=project_id,path"))
}

/// The filters of a PATCH or DELETE; at least one, as Supabase's `safeupdate` requires.
fn filters(parsed: ReadQuery, statement: &str) -> Result<Vec<Filter>, ApiError> {
    if parsed.filters.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "21000", format!("{statement} requires a WHERE clause"))
            .with_hint("filter the rows to change, e.g. ?project_id=eq.<uuid>&path=eq.<path>"));
    }
    if !parsed.order.is_empty() || parsed.limit.is_some() || parsed.offset.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "PGRST100",
            format!("order, limit and offset are not taken by a {statement}"),
        ));
    }
    Ok(parsed.filters)
}

/// `row` with only the `selected` columns (all when none are named).
fn project(row: Map<String, Value>, selected: Option<&[String]>) -> Map<String, Value> {
    match selected {
        None => row,
        Some(columns) => row.into_iter().filter(|(k, _)| columns.contains(k)).collect(),
    }
}

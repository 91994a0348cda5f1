//! The PostgREST surface under `/rest/v1`: `POST|GET /rpc/{function}`, the read subset of
//! `GET /{relation}`, and table writes on the compatibility view ([`write`]).

pub mod write;

pub use fsync_store::query;

use crate::auth::authenticate;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fsync_store::data::{ReadQuery, RpcCall, RpcOutput, Store};
use fsync_store::error::ApiError;
use serde_json::{Map, Value};
use tracing::Instrument;

/// The only schema the API exposes.
pub const EXPOSED_SCHEMA: &str = "public";

const PGRST_OBJECT: &str = "application/vnd.pgrst.object+json";

/// `POST /rest/v1/rpc/{function}`: named arguments in a JSON object body.
pub async fn rpc_post<S: Store>(
    State(state): State<AppState<S>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let args = parse_args(&body);
    call(&state, &headers, "content-profile", function, args, false).await
}

/// `GET /rest/v1/rpc/{function}?arg=value`: a read-only call with text arguments.
pub async fn rpc_get<S: Store>(
    State(state): State<AppState<S>>,
    Path(function): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let args = pairs.into_iter().filter(|(key, _)| key != "apikey").map(|(k, v)| (k, Value::String(v))).collect();
    call(&state, &headers, "accept-profile", function, Ok(args), true).await
}

/// One RPC call, as PostgREST runs it: schema header, caller, then the store.
async fn call<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    profile_header: &str,
    function: String,
    args: Result<Map<String, Value>, ApiError>,
    read_only: bool,
) -> Response {
    let started = state.sources.now();
    let name = function.clone();
    let project = args.as_ref().ok().and_then(|a| a.get("project_uuid")).and_then(Value::as_str).unwrap_or("");
    let span = tracing::info_span!("rpc", function = %name, project_id = %project);
    let result = async {
        check_profile(headers, profile_header)?;
        let auth = authenticate(headers, &state.secret, state.sources.wall_s())?;
        let output = state.store.rpc(&auth, RpcCall { function, args: args?, read_only }).await?;
        Ok::<_, ApiError>(rpc_response(output, headers))
    }
    .instrument(span.clone())
    .await;
    span.in_scope(|| answered(state, &name, started, result))
}

/// The answer to a call or table write of `name` begun at `started`, logged and counted.
fn answered<S: Store>(
    state: &AppState<S>,
    name: &str,
    started: tokio::time::Instant,
    result: Result<Response, ApiError>,
) -> Response {
    let seconds = state.sources.now().saturating_duration_since(started).as_secs_f64();
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    tracing::debug!(status, ms = seconds * 1000.0, "answered");
    state.metrics.rpc(name, status, seconds);
    response
}

/// `GET /rest/v1/{relation}?select=..&col=op.value&order=..&limit=..&offset=..`.
pub async fn read<S: Store>(
    State(state): State<AppState<S>>,
    Path(relation): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        check_profile(&headers, "accept-profile")?;
        let auth = authenticate(&headers, &state.secret, state.sources.wall_s())?;
        let query: ReadQuery = query::parse(&relation, &pairs)?;
        let offset = query.offset.unwrap_or(0);
        let output = state.store.read(&auth, query).await?;
        if wants_object(&headers) {
            if output.count != 1 {
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "PGRST116",
                    "JSON object requested, multiple (or no) rows returned",
                )
                .with_details(format!("The result contains {} rows", output.count)));
            }
            let rows: Vec<Value> = serde_json::from_str(&output.rows_json).map_err(ApiError::internal)?;
            let object = rows.into_iter().next().unwrap_or(Value::Null);
            return Ok(json_response(StatusCode::OK, object.to_string(), Some(PGRST_OBJECT)));
        }
        let mut response = json_response(StatusCode::OK, output.rows_json, None);
        let range =
            if output.count == 0 { "*/*".to_owned() } else { format!("{}-{}/*", offset, offset + output.count - 1) };
        if let Ok(value) = HeaderValue::from_str(&range) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        Ok(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn parse_args(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(args)) => Ok(args),
        Ok(_) => Err(ApiError::invalid_body("the body must be a JSON object of named arguments")),
        Err(e) => Err(ApiError::invalid_body(e.to_string())),
    }
}

fn check_profile(headers: &HeaderMap, name: &str) -> Result<(), ApiError> {
    match headers.get(name).map(|v| v.to_str().unwrap_or("")) {
        None | Some(EXPOSED_SCHEMA) => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "PGRST106",
            format!("The schema must be one of the following: {EXPOSED_SCHEMA}"),
        )
        .with_details(format!("{name}: {other}"))),
    }
}

fn wants_object(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains(PGRST_OBJECT))
}

fn rpc_response(output: RpcOutput, headers: &HeaderMap) -> Response {
    match output {
        RpcOutput::NoContent => StatusCode::NO_CONTENT.into_response(),
        RpcOutput::Json(body) if wants_object(headers) && body.starts_with('[') => {
            match serde_json::from_str::<Vec<Value>>(&body) {
                Ok(rows) if rows.len() == 1 => json_response(StatusCode::OK, rows[0].to_string(), Some(PGRST_OBJECT)),
                Ok(rows) => ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "PGRST116",
                    "JSON object requested, multiple (or no) rows returned",
                )
                .with_details(format!("The result contains {} rows", rows.len()))
                .into_response(),
                Err(e) => ApiError::internal(e).into_response(),
            }
        }
        RpcOutput::Json(body) => json_response(StatusCode::OK, body, None),
    }
}

fn json_response(status: StatusCode, body: String, content_type: Option<&'static str>) -> Response {
    let content_type = content_type.unwrap_or("application/json; charset=utf-8");
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

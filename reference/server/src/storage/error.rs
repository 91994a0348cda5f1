//! Errors as Supabase Storage answers them: `{"statusCode", "code", "error", "message"}`, from
//! the API's own errors and from the object store's.

use super::StorageError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error as Supabase Storage answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl StorageApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        StorageApiError { status, code, message: message.into() }
    }

    pub(crate) fn not_found() -> Self {
        StorageApiError::new(StatusCode::NOT_FOUND, "NoSuchKey", "Object not found")
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StorageApiError::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// A body larger than the endpoint takes (Supabase Storage's `EntityTooLarge`).
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        StorageApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "EntityTooLarge", message)
    }

    pub(crate) fn internal(cause: impl std::fmt::Display) -> Self {
        StorageApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", cause.to_string())
    }
}

/// The one place a storage server error is logged: where it becomes a response.
impl IntoResponse for StorageApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "storage request failed");
        }
        let body = json!({
            "statusCode": self.status.as_u16().to_string(),
            "code": self.code,
            "error": self.code,
            "message": self.message,
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<fsync_store::error::ApiError> for StorageApiError {
    fn from(e: fsync_store::error::ApiError) -> Self {
        let code = match e.status {
            StatusCode::UNAUTHORIZED => "InvalidJWT",
            StatusCode::FORBIDDEN => "AccessDenied",
            StatusCode::SERVICE_UNAVAILABLE => "DatabaseError",
            _ if e.status.is_server_error() => "InternalError",
            _ => "InvalidRequest",
        };
        let message = match e.body.code.as_str() {
            // Row level security refused the row (Supabase's wording).
            "42501" => "new row violates row-level security policy".to_owned(),
            _ => e.body.message,
        };
        StorageApiError::new(e.status, code, message)
    }
}

impl From<StorageError> for StorageApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) => StorageApiError::not_found(),
            StorageError::Range { .. } => {
                StorageApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", "Range not satisfiable")
            }
            other => StorageApiError::internal(other),
        }
    }
}

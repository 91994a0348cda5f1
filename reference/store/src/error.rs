//! API errors in PostgREST's shape: a JSON body `{code, message, details, hint}` and the HTTP
//! status PostgREST derives from the SQLSTATE (or from its own `PGRSTxxx` codes).
//!
//! An error may carry its cause (the database error, the I/O error): it is never sent to the
//! client beyond `details`, but its debug form prints the whole chain, and a 5xx is logged once
//! with it when it becomes a response.

use axum_core::response::{IntoResponse, Response};
use fsync_protocol::api::ErrorBody;
pub use http::StatusCode;
use http::{header, HeaderValue};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// What an error was caused by.
pub type Cause = Arc<dyn StdError + Send + Sync>;

/// An error answered to an API client.
#[derive(Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    cause: Option<Cause>,
}

/// Two errors are equal when a client would see the same answer; the cause is not compared.
impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && self.body == other.body
    }
}

impl Eq for ApiError {}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ApiError");
        debug.field("status", &self.status.as_u16()).field("body", &self.body);
        if let Some(cause) = &self.cause {
            debug.field("cause", &chain(cause.as_ref()));
        }
        debug.finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.body.code, self.body.message)?;
        if let Some(details) = &self.body.details {
            write!(f, " ({details})")?;
        }
        Ok(())
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn StdError + 'static))
    }
}

/// `error: cause: cause's cause`, as `anyhow` prints `{:#}`.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody { code: code.to_owned(), message: message.into(), details: None, hint: None },
            cause: None,
        }
    }

    /// Keeps `cause` as this error's source (not shown to the client).
    pub fn with_cause(mut self, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.cause = Some(Arc::from(cause.into()));
        self
    }

    /// What this error was caused by, if anything.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.body.details = Some(details.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    /// An error raised by the database, mapped the way PostgREST maps it. `authenticated` is
    /// whether the request carried a JWT (it decides 401 or 403 for `42501`).
    pub fn from_sqlstate(
        code: &str,
        message: &str,
        details: Option<&str>,
        hint: Option<&str>,
        authenticated: bool,
    ) -> Self {
        let status = status_for_sqlstate(code, message, authenticated);
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.to_owned(),
                details: details.map(str::to_owned),
                hint: hint.map(str::to_owned),
            },
            cause: None,
        }
    }

    /// The database could not be reached (PostgREST's `PGRST000`); `cause` is kept.
    pub fn unavailable(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        let cause = cause.into();
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "PGRST000", "Could not connect with the database")
            .with_details(cause.to_string())
            .with_cause(cause)
    }

    /// An unexpected failure inside the server; `cause` is kept.
    pub fn internal(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        let cause = cause.into();
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "FSYNC500", "Internal server error")
            .with_details(cause.to_string())
            .with_cause(cause)
    }

    /// A request body that is not the JSON the endpoint takes (PostgREST's `PGRST102`).
    pub fn invalid_body(details: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "PGRST102", "Empty or invalid json").with_details(details)
    }
}

/// The one place a server error is logged: where it becomes a response, with its cause.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let body = serde_json::to_string(&self.body).unwrap_or_else(|_| String::from("{}"));
        let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        let mut response = (self.status, json, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.body.message.replace('"', "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(wait) = self.body.retry_after().filter(|_| self.status == StatusCode::TOO_MANY_REQUESTS) {
            // Whole seconds, as HTTP has it (the body's details keep the milliseconds).
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
        }
        if let Ok(value) = HeaderValue::from_str(&format!("PostgREST; error={}", self.body.code)) {
            response.headers_mut().insert("proxy-status", value);
        }
        response
    }
}

/// PostgREST's SQLSTATE → HTTP status mapping (`mapSQLtoHTTP`).
pub fn status_for_sqlstate(code: &str, message: &str, authenticated: bool) -> StatusCode {
    let status = |n: u16| StatusCode::from_u16(n).unwrap_or(StatusCode::BAD_REQUEST);
    if let Some(digits) = code.strip_prefix("PT") {
        return digits
            .parse::<u16>()
            .ok()
            .filter(|n| (100..600).contains(n))
            .map(status)
            .unwrap_or(StatusCode::BAD_REQUEST);
    }
    match code {
        "23503" | "23505" => return status(409),
        "25006" => return status(405),
        "53400" => return status(500),
        "57P01" => return status(503),
        "P0001" => return status(400),
        "42883" | "42P01" => return status(404),
        "42P17" => return status(500),
        "42501" => return status(if authenticated { 403 } else { 401 }),
        "22023" => {
            let role_missing = message.starts_with("role ") && message.ends_with("does not exist");
            return status(if role_missing { 401 } else { 400 });
        }
        "21000" => {
            return status(if message.contains("requires a WHERE clause") { 400 } else { 500 });
        }
        _ => {}
    }
    let class = code.get(..2).unwrap_or("");
    match class {
        "08" | "53" => status(503),
        "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0" | "HV" | "P0" | "XX" => {
            status(500)
        }
        "0L" | "0P" | "28" => status(403),
        _ => status(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_sqlstates_like_postgrest() {
        let cases = [
            ("PT409", "", true, 409),
            ("PT404", "", true, 404),
            ("PT413", "", true, 413),
            ("PT429", "", true, 429),
            ("22023", "p_file_path has an empty segment", true, 400),
            ("22023", "role \"admin\" does not exist", true, 401),
            ("42501", "", true, 403),
            ("42501", "", false, 401),
            ("23505", "", true, 409),
            ("22P02", "invalid input syntax for type uuid", true, 400),
            ("42883", "", true, 404),
            ("08006", "", true, 503),
            ("40001", "", true, 500),
            ("P0001", "", true, 400),
            ("25006", "", true, 405),
            ("XX000", "", true, 500),
        ];
        for (code, message, authenticated, expected) in cases {
            assert_eq!(status_for_sqlstate(code, message, authenticated).as_u16(), expected, "{code}");
        }
    }

    #[test]
    fn keeps_its_cause_out_of_equality_but_in_its_debug_form_and_source() {
        let io = std::io::Error::other("disk on fire");
        let error = ApiError::internal(io);
        assert_eq!(error.body.details.as_deref(), Some("disk on fire"));
        assert_eq!(error, ApiError::internal("disk on fire"));
        assert!(format!("{error:?}").contains("cause: \"disk on fire\""), "{error:?}");
        assert_eq!(error.to_string(), "500 FSYNC500: Internal server error (disk on fire)");
        assert_eq!(StdError::source(&error).map(ToString::to_string).as_deref(), Some("disk on fire"));
        assert!(ApiError::new(StatusCode::NOT_FOUND, "PT404", "x").cause().is_none());
    }
}

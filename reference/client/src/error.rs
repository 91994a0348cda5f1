//! What a client call can fail with; callers branch on the kind.

use fsync_protocol::api::{ConflictDetails, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The write's `expected_version` did not match the head (HTTP 409). Never retried.
    #[error("version conflict on {}: expected {}, head is {}", details.file_path, details.expected_version, details.current_version)]
    Conflict { details: ConflictDetails, body: Box<ErrorBody> },
    /// The API refused the call (any other 4xx), or kept failing (5xx, 429) until the retries ran out.
    #[error("{status} {}: {}", body.code, body.message)]
    Api { status: u16, body: Box<ErrorBody> },
    /// The server could not be reached, or the connection broke, on every attempt.
    #[error("network error after {attempts} attempts: {source}")]
    Network {
        attempts: u32,
        #[source]
        source: crate::transport::TransportError,
    },
    /// Refused before sending: the server would refuse it too.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The response was not the JSON the call returns.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Conflict { .. } => Some(409),
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

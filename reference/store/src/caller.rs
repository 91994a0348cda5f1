//! The caller of a request: the database role it runs as and its token's claims, as PostgREST
//! puts them in `request.jwt.claims`. The server's `auth` module verifies tokens into one.

use fsync_protocol::jwt::{self, Claims};
use serde_json::Value;

/// A verified caller.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAuth {
    /// The database role the request runs as.
    pub role: String,
    /// The token's claims, as PostgREST puts them in `request.jwt.claims`.
    pub claims: Claims,
}

impl RequestAuth {
    /// `request.jwt.claims` as JSON text.
    pub fn claims_json(&self) -> String {
        Value::Object(self.claims.clone()).to_string()
    }

    /// The service role, with claims issued at `now_s` for a minute: the caller the snapshot
    /// function and the orchestrator act as.
    pub fn service(now_s: u64) -> RequestAuth {
        RequestAuth { role: "service_role".into(), claims: jwt::claims_for("service_role", now_s, 60) }
    }
}

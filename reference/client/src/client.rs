//! Typed RPC calls over PostgREST, with retries.

use crate::error::ClientError;
use crate::retry::{retry_hint, retryable_status, Next, RetryPolicy};
use crate::transport::{self, Transport, TransportError};
use fsync_protocol::api::{
    rpc, BulkEntry, BulkResult, Changes, ConflictDetails, CurrentFile, DeleteResult, ErrorBody, MemberRole, Project,
    UpsertResult, UserProfile,
};
use fsync_protocol::limits::{is_file_type, MAX_BULK_FILES, MAX_CONTENT_BYTES};
use fsync_store::Sources;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use uuid::Uuid;

/// The largest RPC answer read (a large project's `list_current_files` is about its size).
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Where and as whom a client calls.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API URL (`http://127.0.0.1:54321`, or `https://<ref>.supabase.co`).
    pub url: String,
    /// The project's anon (or service_role) key, sent as `apikey`.
    pub apikey: String,
    /// The caller's JWT, sent as `Authorization: Bearer`; `None` sends the apikey.
    pub token: Option<String>,
    pub retry: RetryPolicy,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Where time and jitter come from (the system unless given).
    pub sources: Sources,
    /// How requests reach the server (TCP unless given).
    pub transport: Transport,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>, apikey: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            apikey: apikey.into(),
            token: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            sources: Sources::system(),
            transport: Transport::tcp(),
        }
    }

    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    pub fn sources(mut self, sources: Sources) -> Self {
        self.sources = sources;
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// Replaces `token` with `fresh`. A caller with no anon key (a container) sends its own token as
/// the apikey too: then the apikey is replaced with it, or every request would fail once the
/// first token expired.
pub(crate) fn renew(apikey: &mut String, token: &mut String, fresh: &str) {
    if apikey == token {
        *apikey = fresh.to_owned();
    }
    *token = fresh.to_owned();
}

/// A client of the fsync SQL API.
pub struct FsyncClient {
    transport: Transport,
    timeout: Duration,
    base: String,
    /// The apikey and the Bearer token (`None`: the apikey is sent as both).
    credentials: RwLock<(String, Option<String>)>,
    retry: RetryPolicy,
    rng: Mutex<fastrand::Rng>,
    sources: Sources,
}

impl FsyncClient {
    pub fn new(config: ClientConfig) -> Result<FsyncClient, ClientError> {
        let rng = match config.retry.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => config.sources.ids.rng(),
        };
        Ok(FsyncClient {
            transport: config.transport,
            timeout: config.timeout,
            base: config.url.trim_end_matches('/').to_owned(),
            credentials: RwLock::new((config.apikey, config.token)),
            retry: RetryPolicy { max_attempts: config.retry.max_attempts.max(1), ..config.retry },
            rng: Mutex::new(rng),
            sources: config.sources,
        })
    }

    /// Where this client takes time and ids from (its feeds use the same).
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// How this client reaches the server (its feeds use the same).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Replaces the Bearer token (after a refresh); see [`renew`] for the apikey.
    pub fn set_token(&self, token: impl Into<String>) {
        let token = token.into();
        let mut credentials = self.credentials.write().unwrap_or_else(|e| e.into_inner());
        let (apikey, old) = &mut *credentials;
        let mut current = old.clone().unwrap_or_else(|| apikey.clone());
        renew(apikey, &mut current, &token);
        *old = Some(current);
    }

    /// Attempts in all a call makes before giving up (the policy's, at least 1).
    pub fn max_attempts(&self) -> u32 {
        self.retry.max_attempts
    }

    /// The wait before retry number `retry` (0 for the first): the policy's jittered backoff,
    /// after the server's `hint` when it gave one (the jitter then spreads the callers it
    /// throttled together).
    pub fn backoff(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let jittered = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            self.retry.delay(retry, &mut rng)
        };
        hint.map(|h| h.min(self.retry.max_delay) + jittered).unwrap_or(jittered)
    }

    /// Calls `function` with named `args` and decodes the result, retrying per the policy.
    pub async fn call<T: DeserializeOwned>(&self, function: &str, args: Value) -> Result<T, ClientError> {
        let url = format!("{}/rest/v1/rpc/{function}", self.base);
        let text = self.send(http::Method::POST, &url, &[], &args.to_string(), function).await?;
        decode(&text)
    }

    /// A table write on `relation` — `POST` rows, or `PATCH` / `DELETE` the rows `filters`
    /// (PostgREST's `col=op.value` pairs) match — with `prefer`; the rows written, as the
    /// relation shows them. Retried per the policy, like the RPCs (an upsert or a delete done
    /// twice leaves what doing it once does).
    pub async fn write_table(
        &self,
        method: http::Method,
        relation: &str,
        filters: &[(&str, String)],
        prefer: &str,
        body: Option<&Value>,
    ) -> Result<Vec<Value>, ClientError> {
        let query: Vec<String> =
            filters.iter().map(|(k, v)| format!("{}={}", transport::encode(k), transport::encode(v))).collect();
        let url = format!("{}/rest/v1/{relation}?{}", self.base, query.join("&"));
        let prefer = format!("{prefer},return=representation");
        let body = body.map(Value::to_string).unwrap_or_default();
        let text = self.send(method, &url, &[("prefer", prefer.as_str())], &body, relation).await?;
        decode(&text)
    }

    /// One request, retried per the policy on network errors, 429 and 5xx; the answer's text.
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        extra: &[(&str, &str)],
        body: &str,
        what: &str,
    ) -> Result<String, ClientError> {
        let outcome = self
            .retrying(
                what,
                || self.attempt(method.clone(), url, extra, body),
                |outcome| match outcome {
                    Err(Failure::Network(TransportError::InvalidRequest { .. })) => Next::Done,
                    Err(Failure::Network(_)) => Next::Retry(None),
                    Err(Failure::Status { status, retry_after, .. }) if retryable_status(*status) => {
                        Next::Retry(*retry_after)
                    }
                    _ => Next::Done,
                },
            )
            .await;
        outcome.map_err(|failure| match failure {
            // A network failure left over was retried until the policy's last attempt.
            Failure::Network(source) if !matches!(source, TransportError::InvalidRequest { .. }) => {
                ClientError::Network { attempts: self.retry.max_attempts, source }
            }
            failure => failure.into_error(),
        })
    }

    /// Runs `attempt` again, after [`FsyncClient::backoff`], for as long as `judge` asks and
    /// the policy allows; the last outcome. The one retry loop of the client and the agent.
    pub async fn retrying<T, Fut: Future<Output = T>>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Fut,
        judge: impl Fn(&T) -> Next,
    ) -> T {
        let mut retry = 0;
        loop {
            let outcome = attempt().await;
            let Next::Retry(hint) = judge(&outcome) else { return outcome };
            if retry + 1 >= self.retry.max_attempts {
                return outcome;
            }
            let wait = self.backoff(retry, hint);
            tracing::debug!(what, retry, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    async fn attempt(
        &self,
        method: http::Method,
        url: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Result<String, Failure> {
        let (apikey, token) = self.credentials.read().unwrap_or_else(|e| e.into_inner()).clone();
        let bearer = format!("Bearer {}", token.as_deref().unwrap_or(&apikey));
        let mut headers = vec![
            ("apikey", apikey.as_str()),
            ("content-type", "application/json"),
            ("content-profile", "public"),
            ("authorization", bearer.as_str()),
        ];
        headers.extend_from_slice(extra);
        let request = transport::request(method, url, &headers, body.to_owned()).map_err(Failure::Network)?;
        let response =
            self.transport.fetch(request, MAX_RESPONSE_BYTES, self.timeout).await.map_err(Failure::Network)?;
        let status = response.status.as_u16();
        let text = response.text();
        let retry_after = retry_hint(&response.headers, &text);
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(Failure::Status { status, text, retry_after })
        }
    }

    // ---- typed calls, one per RPC ----

    pub async fn upsert_project_file(
        &self,
        project: Uuid,
        file_path: &str,
        content: &str,
        file_type: &str,
        expected_version: Option<i32>,
    ) -> Result<UpsertResult, ClientError> {
        check_file(file_path, Some(file_type), Some(content))?;
        self.call(
            rpc::UPSERT_PROJECT_FILE,
            json!({
                "project_uuid": project, "p_file_path": file_path, "p_content": content,
                "p_file_type": file_type, "expected_version": expected_version,
            }),
        )
        .await
    }

    pub async fn delete_project_file(
        &self,
        project: Uuid,
        file_path: &str,
        expected_version: Option<i32>,
    ) -> Result<DeleteResult, ClientError> {
        check_file(file_path, None, None)?;
        self.call(
            rpc::DELETE_PROJECT_FILE,
            json!({"project_uuid": project, "p_file_path": file_path, "expected_version": expected_version}),
        )
        .await
    }

    pub async fn list_current_files(&self, project: Uuid) -> Result<Vec<CurrentFile>, ClientError> {
        self.call(rpc::LIST_CURRENT_FILES, json!({"project_uuid": project})).await
    }

    pub async fn bulk_upsert_project_files(
        &self,
        project: Uuid,
        files: &[BulkEntry],
    ) -> Result<BulkResult, ClientError> {
        if files.is_empty() || files.len() > MAX_BULK_FILES {
            return Err(ClientError::InvalidInput(format!(
                "a bulk takes 1 to {MAX_BULK_FILES} files, not {}",
                files.len()
            )));
        }
        for entry in files {
            if entry.delete {
                check_file(&entry.file_path, None, None)?;
            } else {
                check_file(
                    &entry.file_path,
                    entry.file_type.as_deref().or(Some("")),
                    entry.content.as_deref().or(Some("")),
                )?;
            }
        }
        self.call(rpc::BULK_UPSERT_PROJECT_FILES, json!({"project_uuid": project, "files": files})).await
    }

    pub async fn list_changes_since(&self, project: Uuid, since_seq: i64) -> Result<Changes, ClientError> {
        self.call(rpc::LIST_CHANGES_SINCE, json!({"project_uuid": project, "since_seq": since_seq})).await
    }

    /// Creates or updates a profile: the caller's own (`user: None`), or anyone's with the
    /// service role.
    pub async fn ensure_user_profile(
        &self,
        user: Option<Uuid>,
        email: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<UserProfile, ClientError> {
        self.call(
            rpc::ENSURE_USER_PROFILE,
            json!({"p_user_id": user, "p_email": email, "p_display_name": display_name}),
        )
        .await
    }

    /// Creates a project owned by the caller (or by `owner`, with the service role).
    pub async fn create_project(&self, name: &str, owner: Option<Uuid>) -> Result<Project, ClientError> {
        self.call(rpc::CREATE_PROJECT, json!({"p_name": name, "p_owner": owner})).await
    }

    pub async fn add_project_member(&self, project: Uuid, user: Uuid, role: MemberRole) -> Result<Value, ClientError> {
        self.call(rpc::ADD_PROJECT_MEMBER, json!({"project_uuid": project, "p_user_id": user, "p_role": role.as_str()}))
            .await
    }

    pub async fn remove_project_member(&self, project: Uuid, user: Uuid) -> Result<Value, ClientError> {
        self.call(rpc::REMOVE_PROJECT_MEMBER, json!({"project_uuid": project, "p_user_id": user})).await
    }
}

/// Refuses locally what the SQL API would refuse, with the same words.
fn check_file(path: &str, file_type: Option<&str>, content: Option<&str>) -> Result<(), ClientError> {
    fsync_protocol::check_path(path).map_err(|p| ClientError::InvalidInput(format!("file path {path:?} {p}")))?;
    if let Some(t) = file_type {
        if !is_file_type(t) {
            return Err(ClientError::InvalidInput(format!("{t:?} is not a known file type")));
        }
    }
    if let Some(c) = content {
        if c.len() > MAX_CONTENT_BYTES {
            return Err(ClientError::InvalidInput(format!(
                "content of {path} is {} bytes, more than the limit of {MAX_CONTENT_BYTES} bytes",
                c.len()
            )));
        }
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ClientError> {
    let text = if text.is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| ClientError::Decode(format!("{e}: {}", truncate(text))))
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One attempt's failure, before the retry decision.
enum Failure {
    Network(TransportError),
    Status { status: u16, text: String, retry_after: Option<Duration> },
}

impl Failure {
    fn into_error(self) -> ClientError {
        match self {
            Failure::Network(TransportError::InvalidRequest { url, reason }) => {
                ClientError::InvalidInput(format!("request to {url}: {reason}"))
            }
            Failure::Network(source) => ClientError::Network { attempts: 1, source },
            Failure::Status { status, text, .. } => {
                let body: ErrorBody = serde_json::from_str(&text).unwrap_or_else(|_| ErrorBody {
                    code: status.to_string(),
                    message: truncate(&text).to_owned(),
                    details: None,
                    hint: None,
                });
                if status == 409 {
                    if let Some(details) =
                        body.details.as_deref().and_then(|d| serde_json::from_str::<ConflictDetails>(d).ok())
                    {
                        return ClientError::Conflict { details, body: Box::new(body) };
                    }
                }
                ClientError::Api { status, body: Box::new(body) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::renew;

    #[test]
    fn a_token_used_as_apikey_is_renewed_as_both() {
        let (mut apikey, mut token) = ("first".to_owned(), "first".to_owned());
        renew(&mut apikey, &mut token, "second");
        assert_eq!((apikey.as_str(), token.as_str()), ("second", "second"));
        let (mut anon, mut user) = ("anon".to_owned(), "first".to_owned());
        renew(&mut anon, &mut user, "second");
        assert_eq!((anon.as_str(), user.as_str()), ("anon", "second"), "an anon key stays");
    }
}

//! Editors: the real client writing a random workload of upserts, deletes and bulks, with
//! compare-and-set (from the versions it last saw) and last-writer-wins, conflicting on purpose
//! with each other on a few paths.

use crate::trace::Trace;
use fsync_client::{ClientConfig, ClientError, FsyncClient, RetryPolicy, Transport};
use fsync_protocol::api::BulkEntry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The paths editors fight over.
const PATHS: &[&str] = &["package.json", "src/App.tsx", "src/lib/util.ts", "src/components/Button.tsx", "README.md"];

/// What one editor does.
pub struct Editor {
    pub name: String,
    pub api_url: String,
    pub anon: String,
    pub token: String,
    pub project: Uuid,
    pub ops: usize,
    pub rng: fastrand::Rng,
    pub sources: fsync_store::Sources,
    pub trace: Trace,
    /// Counts editors that finished.
    pub done: Arc<AtomicUsize>,
}

impl Editor {
    pub async fn run(mut self) -> turmoil::Result {
        let config = ClientConfig::new(&self.api_url, &self.anon)
            .token(&self.token)
            .retry(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() })
            .sources(self.sources.clone())
            .transport(Transport::new(Arc::new(crate::net::SimDialer)));
        let client = FsyncClient::new(config)?;
        let mut versions: BTreeMap<&str, i32> = BTreeMap::new();
        for op in 0..self.ops {
            tokio::time::sleep(Duration::from_millis(self.rng.u64(20..400))).await;
            let path = PATHS[self.rng.usize(..PATHS.len())];
            let expected = if self.rng.bool() { versions.get(path).copied() } else { None };
            let outcome = match self.rng.u8(0..10) {
                0..=5 => {
                    let content = format!("// {} op {op}\nexport const v = {};\n", self.name, self.rng.u32(..));
                    client
                        .upsert_project_file(self.project, path, &content, "typescript", expected)
                        .await
                        .map(|r| (r.seq, Some((path, r.version))))
                }
                6..=7 => client.delete_project_file(self.project, path, expected).await.map(|r| (r.seq, None)),
                _ => {
                    let other = PATHS[self.rng.usize(..PATHS.len())];
                    let mut entries = vec![BulkEntry::upsert(path, "typescript", format!("bulk {} {op}", self.name))];
                    if other != path {
                        entries.push(BulkEntry::delete(other));
                    }
                    client.bulk_upsert_project_files(self.project, &entries).await.map(|r| (r.seq, None))
                }
            };
            match outcome {
                Ok((seq, seen)) => {
                    if let Some((path, version)) = seen {
                        versions.insert(path, version);
                    }
                    self.trace.note(format!("{} op {op} acknowledged at seq {seq}", self.name));
                }
                Err(ClientError::Conflict { details, .. }) => {
                    versions.insert(path, details.current_version);
                    self.trace.note(format!("{} op {op} conflict on {path}", self.name));
                }
                Err(e) => self.trace.note(format!("{} op {op} failed: {}", self.name, kind(&e))),
            }
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The kind of a failure, without its text (messages carry addresses and timings).
fn kind(error: &ClientError) -> String {
    match error {
        ClientError::Api { status, body } => format!("{status} {}", body.code),
        ClientError::Network { .. } => "network".into(),
        ClientError::Conflict { .. } => "conflict".into(),
        ClientError::InvalidInput(_) => "invalid input".into(),
        ClientError::Decode(_) => "decode".into(),
    }
}

//! Editors: the real client writing a random workload of upserts, deletes and bulks over a few
//! projects, with compare-and-set (from the versions it last saw) and last-writer-wins,
//! conflicting on purpose with each other on a few paths. A viewer tries the same and must be
//! refused every time. Every acknowledged write goes into the [`Ledger`]; on the legacy paths the
//! editor then broadcasts its edit itself.

use crate::check::Found;
use crate::ledger::{Ack, Ledger};
use crate::legacy::{Announcer, Edit};
use crate::trace::{self, Trace};
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
    /// The server it talks to (`server-0`, `server-1`).
    pub server: String,
    pub anon: String,
    pub token: String,
    pub projects: Vec<Uuid>,
    /// A viewer: every write must be refused.
    pub viewer: bool,
    pub ops: usize,
    pub rng: fastrand::Rng,
    pub sources: fsync_store::Sources,
    pub trace: Trace,
    pub ledger: Ledger,
    pub found: Found,
    /// The legacy paths: broadcast each acknowledged edit.
    pub legacy: bool,
    /// Counts editors that finished.
    pub done: Arc<AtomicUsize>,
}

/// What one write did: its seq, the paths it gave, the version a single-file write answered, and
/// whether it changed nothing.
struct Wrote {
    seq: i64,
    entries: Vec<(String, Option<String>)>,
    version: Option<i32>,
    noop: bool,
}

impl Editor {
    pub async fn run(mut self) -> turmoil::Result {
        let api_url = crate::net::api_url(&self.server);
        let transport = Transport::new(Arc::new(crate::net::SimDialer));
        let config = ClientConfig::new(&api_url, &self.anon)
            .token(&self.token)
            .retry(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() })
            .sources(self.sources.clone())
            .transport(transport.clone());
        let client = FsyncClient::new(config)?;
        let mut announcer = Announcer::new(api_url, self.anon.clone(), self.token.clone(), transport);
        let mut versions: BTreeMap<(Uuid, &str), i32> = BTreeMap::new();
        for op in 0..self.ops {
            tokio::time::sleep(Duration::from_millis(self.rng.u64(20..800))).await;
            let n = self.rng.usize(..self.projects.len());
            let project = self.projects[n];
            let path = PATHS[self.rng.usize(..PATHS.len())];
            let at = format!("p{n}/{path}");
            let expected = if self.rng.bool() { versions.get(&(project, path)).copied() } else { None };
            let sent = trace::now();
            match self.write(&client, project, path, expected, op).await {
                Ok(wrote) => {
                    let what = format!("op {op} on {at}: seq {}", wrote.seq);
                    self.trace.message(&self.name, &self.server, sent, what);
                    if self.viewer {
                        let detail = format!("viewer {} wrote {at} at seq {}", self.name, wrote.seq);
                        self.found.report(&self.trace, &self.name, "7 roles: a viewer writes nothing", detail);
                        continue;
                    }
                    if let Some(version) = wrote.version {
                        versions.insert((project, path), version);
                    }
                    let cas = expected.zip(wrote.version).filter(|_| !wrote.noop).map(|(e, v)| (path.to_owned(), e, v));
                    let ack = Ack { editor: self.name.clone(), project, seq: wrote.seq, entries: wrote.entries, cas };
                    if self.legacy {
                        let edits: Vec<Edit> =
                            ack.entries.iter().map(|(p, c)| Edit { path: p.clone(), content: c.clone() }).collect();
                        if !announcer.announce(project, &edits).await {
                            self.trace.note(&self.name, format!("op {op}: its broadcast was lost"));
                        }
                    }
                    self.ledger.record(ack);
                }
                Err(ClientError::Conflict { details, .. }) => {
                    versions.insert((project, path), details.current_version);
                    self.trace.message(&self.name, &self.server, sent, format!("op {op} on {at}: conflict"));
                }
                Err(e) => self.trace.message(&self.name, &self.server, sent, format!("op {op} on {at}: {}", kind(&e))),
            }
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// One random write: an upsert, a delete, or a bulk of an upsert and a delete.
    async fn write(
        &mut self,
        client: &FsyncClient,
        project: Uuid,
        path: &str,
        expected: Option<i32>,
        op: usize,
    ) -> Result<Wrote, ClientError> {
        match self.rng.u8(0..10) {
            0..=5 => {
                let content = format!("// {} op {op}\nexport const v = {};\n", self.name, self.rng.u32(..));
                let r = client.upsert_project_file(project, path, &content, "typescript", expected).await?;
                let entries = vec![(path.to_owned(), Some(content))];
                Ok(Wrote { seq: r.seq, entries, version: Some(r.version), noop: r.noop })
            }
            6..=7 => {
                let r = client.delete_project_file(project, path, expected).await?;
                let entries = vec![(path.to_owned(), None)];
                Ok(Wrote { seq: r.seq, entries, version: Some(r.version), noop: r.noop })
            }
            _ => {
                let other = PATHS[self.rng.usize(..PATHS.len())];
                let content = format!("bulk {} {op}", self.name);
                let mut entries = vec![BulkEntry::upsert(path, "typescript", content.clone())];
                let mut given = vec![(path.to_owned(), Some(content))];
                if other != path {
                    entries.push(BulkEntry::delete(other));
                    given.push((other.to_owned(), None));
                }
                let r = client.bulk_upsert_project_files(project, &entries).await?;
                Ok(Wrote { seq: r.seq, entries: given, version: None, noop: false })
            }
        }
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

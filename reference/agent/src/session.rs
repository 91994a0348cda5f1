//! The agent's life (DESIGN §9): join first, hydrate, catch up, report `running`, then follow.
//!
//! 1. Join the project's channel with the container token (events before the base seq are not
//!    needed: the catch-up after hydration reads after they committed).
//! 2. Hydrate: with a snapshot, fetch the manifest from the orchestrator, stream the zip to disk
//!    while hashing it, check the hash, extract into a fresh directory with every guard, and
//!    rename it into place; without one (the legacy path), list the files and write them one by
//!    one through the API.
//! 3. Set the base seq (the manifest's) and wait for the catch-up from it.
//! 4. Start `--exec`, report `running`, then apply each batch as it comes, fetching binary
//!    contents from storage; refresh the token before it expires; stop on SIGTERM.
//!
//! This file is the lifecycle; [`crate::api`] the HTTP calls, [`crate::hydrate`] step 2 and
//! [`crate::follow`] step 4.

use crate::api::Api;
use crate::{follow, hydrate};
use anyhow::Context;
use fsync_client::realtime::{FeedConfig, ProjectFeed};
use fsync_client::Transport;
use fsync_protocol::snapshot::{ExtractLimits, SessionStatus};
use fsync_store::Sources;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long the agent waits to join its channel before it gives up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Change batches the feed may hold before the agent applies them.
const FEED_CAPACITY: usize = 1024;

/// What the agent is told (DESIGN §12): five variables, `--dir` and `--exec`.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub project: Uuid,
    pub session: Uuid,
    /// Empty: the legacy path (file by file through the API).
    pub snapshot_url: String,
    pub token: String,
    pub api_url: String,
    pub dir: PathBuf,
    pub exec: Option<String>,
    pub limits: ExtractLimits,
    /// Where time and ids come from (the system unless given).
    pub sources: Sources,
    /// How the agent reaches the API (TCP unless given).
    pub transport: Transport,
}

impl AgentConfig {
    /// Reads the five variables through `lookup`; names what is missing or malformed.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        dir: PathBuf,
        exec: Option<String>,
    ) -> Result<AgentConfig, String> {
        let var = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
        let uuid = |name: &str| -> Result<Uuid, String> {
            let value = var(name)?;
            Uuid::parse_str(value.trim()).map_err(|_| format!("{name}={value:?} is not a uuid"))
        };
        let token = var("REALTIME_TOKEN")?;
        if token.trim().is_empty() {
            return Err("REALTIME_TOKEN is empty".into());
        }
        let api_url = var("FSYNC_API_URL")?.trim_end_matches('/').to_owned();
        if !api_url.starts_with("http://") && !api_url.starts_with("https://") {
            return Err(format!("FSYNC_API_URL={api_url:?} is not an http(s) URL"));
        }
        Ok(AgentConfig {
            project: uuid("PROJECT_ID")?,
            session: uuid("SESSION_ID")?,
            snapshot_url: var("SNAPSHOT_URL")?.trim().to_owned(),
            token,
            api_url,
            dir,
            exec,
            limits: ExtractLimits::default(),
            sources: Sources::system(),
            transport: Transport::tcp(),
        })
    }
}

/// Runs the agent until `shutdown` resolves (or it fails). Reports `failed` with the reason
/// (the whole context chain) itself when it can.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let api = Arc::new(Api::new(config)?);
    let mut timings = BTreeMap::new();
    match run_inner(&api, &mut timings, shutdown).await {
        Ok(()) => Ok(()),
        Err(e) => {
            api.report(SessionStatus::Failed, Some(format!("{e:#}")), &timings).await;
            Err(e)
        }
    }
}

async fn run_inner(
    api: &Arc<Api>,
    timings: &mut BTreeMap<String, f64>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = &api.config;
    let started = api.now();
    let feed_config = FeedConfig::new(&config.api_url, &config.token, &config.token, config.project);
    let (feed, mut events) = ProjectFeed::start(feed_config, api.client.clone(), None, FEED_CAPACITY);
    follow::subscribed(&mut events, api.now() + JOIN_TIMEOUT).await?;
    timings.insert("join".into(), api.ms(started));
    api.report(SessionStatus::Hydrating, None, timings).await;

    let (dir, base) = if config.snapshot_url.is_empty() {
        hydrate::file_by_file(api, timings).await?
    } else {
        hydrate::from_snapshot(api, timings).await?
    };

    let step = api.now();
    feed.set_base_seq(base);
    let mut caught_up = feed.caught_up();
    loop {
        tokio::select! {
            changed = caught_up.changed() => {
                changed.context("the realtime feed stopped")?;
                if caught_up.borrow().is_some_and(|seq| seq >= base) {
                    break;
                }
            }
            event = events.recv() => follow::apply_event(api, &dir, event).await?,
        }
    }
    while let Ok(event) = events.try_recv() {
        follow::apply_event(api, &dir, Some(event)).await?;
    }
    timings.insert("catch_up".into(), api.ms(step));

    let mut child = match &config.exec {
        None => None,
        Some(command) => {
            let step = api.now();
            let child = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .current_dir(dir.root())
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("PROJECT_DIR", dir.root())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("start --exec {command:?}"))?;
            timings.insert("exec".into(), api.ms(step));
            Some(child)
        }
    };
    timings.insert("hydrate".into(), api.ms(started));
    api.report(SessionStatus::Running, None, timings).await;
    tracing::info!(seq = ?feed.last_seq(), dir = %dir.root().display(), "running");

    follow::follow(api, &feed, &mut events, &dir, &mut child, shutdown).await
}

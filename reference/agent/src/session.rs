//! The agent's life (DESIGN §9): join first, hydrate, catch up, report `running`, then follow.
//!
//! 1. Join the project's channel with the container token (events before the base seq are not
//!    needed: the catch-up after hydration reads after they committed), waiting out a network
//!    that fails for up to [`JOIN_PATIENCE`] and renewing a token that expired meanwhile.
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
use crate::{exec, follow, hydrate};
use anyhow::Context;
use fsync_client::realtime::{FeedConfig, ProjectFeed};
use fsync_protocol::snapshot::SessionStatus;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;

pub use crate::config::AgentConfig;
pub use crate::follow::{JOIN_PATIENCE, JOIN_TIMEOUT};

/// Change batches the feed may hold before the agent applies them.
const FEED_CAPACITY: usize = 1024;

/// Runs the agent until `shutdown` resolves (or it fails). Reports `failed` with the reason
/// (the whole context chain) itself when it can.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Every line the agent logs names its project and session.
    let span = tracing::info_span!("agent", project_id = %config.project, session_id = %config.session);
    async move {
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
    .instrument(span)
    .await
}

async fn run_inner(
    api: &Arc<Api>,
    timings: &mut BTreeMap<String, f64>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = &api.config;
    let started = api.now();
    let mut feed_config = FeedConfig::new(&config.api_url, &config.token, &config.token, config.project);
    feed_config.plant = config.plant;
    let (feed, mut events) = ProjectFeed::start(feed_config, api.client.clone(), None, FEED_CAPACITY);
    if let Some(why) = follow::subscribed(api, &feed, &mut events).await? {
        tracing::info!(%why, "the session ended before the agent joined; stopped");
        return Ok(());
    }
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
        // Biased: the same order on every run when both are ready (the simulator).
        tokio::select! {
            biased;
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
            let mut child = exec::start(command, dir.root(), config.preview.as_ref())?;
            timings.insert("exec".into(), api.ms(step));
            if let Some(preview) = &config.preview {
                let step = api.now();
                exec::until_ready(&mut child, preview).await?;
                timings.insert("dev_server".into(), api.ms(step));
            }
            Some(child)
        }
    };
    timings.insert("hydrate".into(), api.ms(started));
    api.report(SessionStatus::Running, None, timings).await;
    tracing::info!(seq = ?feed.last_seq(), dir = %dir.root().display(), "running");

    follow::follow(api, &feed, &mut events, &dir, &mut child, shutdown).await
}

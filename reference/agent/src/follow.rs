//! Following (DESIGN §9 step 4): every batch the feed hands out applied atomically, binaries
//! fetched from storage, the token refreshed at two thirds of its life, until shutdown.

use crate::api::Api;
use crate::apply::ProjectDir;
use anyhow::{bail, Context};
use fsync_client::realtime::{FeedEvent, FeedHandle};
use fsync_protocol::jwt;
use fsync_store::Sources;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a failed token refresh waits before the next try.
const REFRESH_RETRY: Duration = Duration::from_secs(5);
/// How often the commit → applied lags noted meanwhile are reported.
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Waits until the feed has joined the channel, or fails at `deadline` with the last reason.
pub(crate) async fn subscribed(events: &mut mpsc::Receiver<FeedEvent>, deadline: Instant) -> anyhow::Result<()> {
    let mut last_reason = String::from("no answer");
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("could not join the project channel: {last_reason}"),
            Ok(None) => bail!("the realtime feed stopped"),
            Ok(Some(FeedEvent::Subscribed)) => return Ok(()),
            Ok(Some(FeedEvent::Disconnected { reason })) => last_reason = reason,
            Ok(Some(FeedEvent::Changes { .. })) => {}
        }
    }
}

/// Applies one feed event to the directory.
pub(crate) async fn apply_event(api: &Api, dir: &ProjectDir, event: Option<FeedEvent>) -> anyhow::Result<()> {
    match event {
        None => bail!("the realtime feed stopped"),
        Some(FeedEvent::Changes { seq, changes, written_at, .. }) => {
            let binaries = api.binaries(&changes).await?;
            dir.apply_with(&changes, &binaries).with_context(|| format!("apply the changes up to seq {seq}"))?;
            if let Some(written_at) = written_at {
                api.note_applied(written_at);
            }
            tracing::debug!(seq, files = changes.len(), "applied");
            Ok(())
        }
        Some(FeedEvent::Disconnected { reason }) => {
            tracing::info!(%reason, "realtime disconnected; reconnecting and catching up");
            Ok(())
        }
        Some(FeedEvent::Subscribed) => Ok(()),
    }
}

/// Follows the feed until shutdown, refreshing the token at two thirds of its life.
pub(crate) async fn follow(
    api: &Arc<Api>,
    feed: &FeedHandle,
    events: &mut mpsc::Receiver<FeedEvent>,
    dir: &ProjectDir,
    child: &mut Option<tokio::process::Child>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let sources = &api.config.sources;
    let mut refresh_at = refresh_deadline(sources, &api.token());
    let mut report_lags_at = api.now() + LAG_REPORT_EVERY;
    loop {
        let child_exit = async {
            match child.as_mut() {
                Some(child) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => {
                if let Some(child) = child.as_mut() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                tracing::info!("stopped");
                return Ok(());
            }
            event = events.recv() => apply_event(api, dir, event).await?,
            status = child_exit => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                bail!("the --exec command exited ({status})");
            }
            _ = tokio::time::sleep_until(report_lags_at) => {
                api.report_lags().await;
                report_lags_at = api.now() + LAG_REPORT_EVERY;
            }
            _ = tokio::time::sleep_until(refresh_at) => {
                match api.refresh_token().await {
                    Ok(grant) => {
                        api.set_token(&grant.access_token);
                        feed.set_token(grant.access_token.clone());
                        refresh_at = refresh_deadline(sources, &grant.access_token);
                        tracing::debug!(expires_at = grant.expires_at, "token refreshed");
                    }
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "token refresh failed; retrying in 5 s");
                        refresh_at = api.now() + REFRESH_RETRY;
                    }
                }
            }
        }
    }
}

/// When to refresh `token`: at two thirds of its remaining life (at least a second from now).
fn refresh_deadline(sources: &Sources, token: &str) -> Instant {
    let now = sources.wall_s();
    let exp = jwt::unverified_claims(token).and_then(|c| c.get("exp").and_then(Value::as_u64)).unwrap_or(now + 60);
    let left = exp.saturating_sub(now);
    sources.now() + Duration::from_secs((left * 2 / 3).max(1))
}

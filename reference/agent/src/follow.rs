//! Following (DESIGN §9 step 4): every batch the feed hands out applied atomically, binaries
//! fetched from storage, the token refreshed at two thirds of its life, until shutdown.

use crate::api::{Api, Refresh};
use crate::apply::ProjectDir;
use anyhow::{bail, Context};
use fsync_client::realtime::{FeedEvent, FeedHandle};
use fsync_protocol::jwt;
use fsync_store::Sources;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the agent keeps trying to join its channel while the server refuses it.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent keeps trying to reach the server to join its channel (an outage at its
/// start, or a container restarted during one); after that its session fails with the reason.
/// Once running, an agent waits out an outage of any length.
pub const JOIN_PATIENCE: Duration = Duration::from_secs(fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S);
/// How long a failed token refresh waits before the next try.
const REFRESH_RETRY: Duration = Duration::from_secs(5);
/// How often the agent reports (its heartbeat, with the commit → applied lags noted meanwhile).
const LAG_REPORT_EVERY: Duration = Duration::from_millis(fsync_protocol::snapshot::AGENT_REPORT_EVERY_MS);

/// Waits until the feed has joined the channel. A network that fails is waited out for
/// [`JOIN_PATIENCE`] (a container that starts again during an outage joins when the network is
/// back); an expired token is renewed first; joins the server refuses fail the agent after
/// [`JOIN_TIMEOUT`] of refusals. `Ok(Some(why))`: the session ended meanwhile.
pub(crate) async fn subscribed(
    api: &Api,
    feed: &FeedHandle,
    events: &mut mpsc::Receiver<FeedEvent>,
) -> anyhow::Result<Option<String>> {
    let unreachable_until = api.now() + JOIN_PATIENCE;
    let mut refused_since: Option<Instant> = None;
    let mut last_reason = String::from("no answer");
    loop {
        let deadline = refused_since.map_or(unreachable_until, |since| (since + JOIN_TIMEOUT).min(unreachable_until));
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("could not join the project channel: {last_reason}"),
            Ok(None) => bail!("the realtime feed stopped"),
            Ok(Some(FeedEvent::Subscribed)) => return Ok(None),
            Ok(Some(FeedEvent::Disconnected { reason, refused })) => {
                tracing::info!(%reason, "could not join the project channel yet");
                last_reason = reason;
                let was_expired = expired(&api.config.sources, &api.token());
                if !refused && !was_expired {
                    continue;
                }
                // Refused: perhaps only its token expired (renewed here), or its session ended.
                match renew(api, feed).await? {
                    Renewal::Ended(why) => return Ok(Some(why)),
                    // The refusal was its expired token's: the renewed one starts afresh.
                    Renewal::Renewed(_) if was_expired => refused_since = None,
                    Renewal::Renewed(_) | Renewal::Retry if refused => {
                        refused_since.get_or_insert(api.now());
                    }
                    Renewal::Renewed(_) | Renewal::Retry => {}
                }
            }
            Ok(Some(FeedEvent::Changes { .. })) => {}
        }
    }
}

/// What a token refresh came to.
pub(crate) enum Renewal {
    /// A new token, in use from now on; when to renew it.
    Renewed(Instant),
    /// Not now (the network, or the server, failed): try again later.
    Retry,
    /// The session has ended (why): the agent stops.
    Ended(String),
}

/// Asks for a new container token (the current one may have expired) and hands it to the API
/// client and the feed; an `Err` when the orchestrator refuses the credential itself.
pub(crate) async fn renew(api: &Api, feed: &FeedHandle) -> anyhow::Result<Renewal> {
    match api.refresh_token().await {
        Ok(Refresh::Granted(grant)) => {
            api.set_token(&grant.access_token);
            feed.set_token(grant.access_token.clone());
            tracing::debug!(expires_at = grant.expires_at, "token refreshed");
            Ok(Renewal::Renewed(refresh_deadline(&api.config.sources, &grant.access_token)))
        }
        Ok(Refresh::Ended(why)) => Ok(Renewal::Ended(why)),
        Ok(Refresh::Refused(why)) => bail!("the orchestrator refused to renew the container token: {why}"),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "token refresh failed; retrying later");
            Ok(Renewal::Retry)
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
        Some(FeedEvent::Disconnected { reason, .. }) => {
            tracing::info!(%reason, "realtime disconnected; reconnecting and catching up");
            Ok(())
        }
        Some(FeedEvent::Subscribed) => Ok(()),
    }
}

/// Follows the feed until shutdown, or until the session has ended (the orchestrator says so),
/// refreshing the token at two thirds of its life, and reporting every [`LAG_REPORT_EVERY`]
/// (the heartbeat that keeps the session `running`).
///
/// A token that expired while the agent was cut off is renewed as soon as the network is back
/// (the refresh takes an expired token of a live session), and the feed rejoins with it and
/// catches up: a preview is never stranded by an outage, however long.
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
    let mut report_at = api.now() + LAG_REPORT_EVERY;
    // The report on its way, if one is: it never holds up applying events (a partition may keep
    // it waiting up to its timeout).
    let mut report: Option<Pin<Box<dyn Future<Output = bool> + Send + '_>>> = None;
    // Whether the feed is joined (it was when following began).
    let mut following = true;
    let ended = loop {
        let child_exit = async {
            match child.as_mut() {
                Some(child) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        let idle = report.is_none();
        let reported = async {
            match report.as_mut() {
                Some(report) => report.await,
                None => std::future::pending().await,
            }
        };
        // Biased, so that branches ready at once run in the same order on every run (the
        // simulator replays a seed exactly); the timers, due at most every second, come before
        // the events, so that a stream of events never starves the heartbeat or the refresh.
        tokio::select! {
            biased;
            _ = &mut shutdown => break None,
            ended = reported => {
                report = None;
                if ended {
                    break Some("the orchestrator says the session has ended".to_owned());
                }
            }
            _ = tokio::time::sleep_until(report_at), if idle => {
                report = Some(Box::pin(api.report_lags(following, feed.last_seq())));
                report_at = api.now() + LAG_REPORT_EVERY;
            }
            _ = tokio::time::sleep_until(refresh_at) => match renew(api, feed).await? {
                Renewal::Renewed(next) => refresh_at = next,
                Renewal::Retry => refresh_at = api.now() + REFRESH_RETRY,
                Renewal::Ended(why) => break Some(why),
            },
            event = events.recv() => {
                if let Some(FeedEvent::Disconnected { refused, .. }) = &event {
                    following = false;
                    // Its token expired, or the server refused it (its session may have ended):
                    // the refresh tells.
                    if *refused || expired(sources, &api.token()) {
                        refresh_at = api.now();
                    }
                } else if event.is_some() {
                    following = true;
                }
                apply_event(api, dir, event).await?;
            }
            status = child_exit => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                bail!("the --exec command exited ({status})");
            }
        }
    };
    if let Some(child) = child.as_mut() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    match ended {
        Some(why) => tracing::info!(%why, "the session has ended; stopped"),
        None => tracing::info!("stopped"),
    }
    Ok(())
}

/// Whether `token` has expired.
fn expired(sources: &Sources, token: &str) -> bool {
    expiry(token).is_none_or(|exp| exp <= sources.wall_s())
}

/// `token`'s `exp`, read without verifying it (the holder's own token).
fn expiry(token: &str) -> Option<u64> {
    jwt::unverified_claims(token).and_then(|c| c.get("exp").and_then(Value::as_u64))
}

/// When to refresh `token`: at two thirds of its remaining life (at least a second from now).
fn refresh_deadline(sources: &Sources, token: &str) -> Instant {
    let now = sources.wall_s();
    let exp = expiry(token).unwrap_or(now + 60);
    let left = exp.saturating_sub(now);
    sources.now() + Duration::from_secs((left * 2 / 3).max(1))
}

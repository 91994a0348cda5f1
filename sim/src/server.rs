//! A server host: the real router on the model, with Storage, the snapshot function and the
//! orchestrator over the shared bucket, agents launched onto the agent hosts. Two server hosts
//! share the model and the bucket as two instances share a database: each listens for the
//! model's broadcasts, so a write through one is delivered by the other.

use crate::clock;
use crate::launcher::SimLauncher;
use crate::net::{self, SimListener};
use crate::world::Shared;
use fsync_protocol::jwt::Secret;
use fsync_reference::config::DEV_JWT_SECRET;
use fsync_reference::orchestrator::OrchestratorConfig;
use fsync_reference::realtime::RealtimeConfig;
use fsync_reference::storage::Storage;
use fsync_reference::ServerBuilder;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Runs the server host `name` until it crashes.
pub async fn server_host(shared: Shared, name: String) -> turmoil::Result {
    // Each start draws from an id stream of its own: a restarted server must not hand out the
    // ids it handed out before.
    let start = shared.starts.fetch_add(1, Ordering::SeqCst) as u64;
    let sources = clock::sources(shared.seed, 2 + 1_000 * start);
    let orchestrator = OrchestratorConfig {
        sessions_dir: shared.sessions_dir.clone(),
        launcher: Arc::new(SimLauncher { queue: shared.queue.clone() }),
        snapshot_hydration: !shared.legacy,
        agent_exec: None,
        token_ttl_s: shared.token_ttl_s,
        max_sessions_per_user: fsync_reference::orchestrator::MAX_SESSIONS_PER_USER,
        instance: name.clone(),
    };
    let storage = Storage::from_store(shared.objects.clone(), "memory://");
    let realtime =
        RealtimeConfig { plant: shared.plant, keep_client_broadcast: shared.legacy, ..RealtimeConfig::default() };
    let server = ServerBuilder::new(shared.store.clone())
        .secret(Secret::new(DEV_JWT_SECRET))
        .sources(sources)
        .realtime(realtime)
        .platform(shared.store.clone(), storage, orchestrator)
        .start()
        .await?;
    if let Some(platform) = &server.platform {
        platform.set_public_url(net::api_url(&name));
    }
    shared.trace.note(&name, "up");
    server.serve(SimListener::bind().await?, std::future::pending()).await?;
    Ok(())
}

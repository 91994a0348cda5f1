//! The stack a local KPI run measures, started the way `serve` starts it: the database from
//! `DATABASE_URL`, else the machine's PostgreSQL, else a private cluster (a fresh database
//! `fsync_kpi` either way, dropped at the end), storage in a local directory (under the run's
//! work directory, with the agents' directories), and agents as real processes. Two server instances share that database: one with snapshot hydration on (the
//! plan's new path) and one with it off (the legacy file-by-file path), so both are measured on
//! the same projects; with a preview image, a third (hydration on) starts its agents as Docker
//! containers of it on the host's network (they reach the instance on loopback).

use anyhow::Context;
use fsync_client::{Api, Transport};
use fsync_protocol::jwt::Secret;
use fsync_reference::config::{anon_key, service_role_key, DEV_JWT_SECRET};
use fsync_reference::orchestrator::docker::INSTANCE_LABEL;
use fsync_reference::orchestrator::{DockerConfig, DockerLauncher, OrchestratorConfig, ProcessLauncher};
use fsync_reference::pg::bootstrap::{self, Database};
use fsync_reference::realtime::RealtimeConfig;
use fsync_reference::storage::Storage;
use fsync_reference::{PgStore, ServerBuilder};
use fsync_store::launch::Launcher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The name of the run's instance `name` (`fast`, `legacy`, `containers`) in the session records
/// and, for `containers`, its preview containers' label.
pub fn instance_of(name: &str) -> String {
    format!("kpi-{name}")
}

/// The database a KPI run creates afresh (and drops when it ends).
pub const DATABASE: &str = "fsync_kpi";

/// One running server instance.
pub struct Instance {
    pub api: Api,
    /// Its API URL (`http://127.0.0.1:port`).
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<std::io::Result<()>>,
}

/// Everything a local run started.
pub struct Local {
    /// Snapshot hydration on.
    pub fast: Instance,
    /// Snapshot hydration off (the legacy path).
    pub legacy: Instance,
    /// Snapshot hydration on, agents in containers (`--launcher docker`).
    pub containers: Option<Instance>,
    pub secret: Secret,
    pub service_key: String,
    /// The run's database (a superuser URL).
    pub database_url: String,
    /// How the agent is started, for the report.
    pub agent: String,
    pub dir: tempfile::TempDir,
    base: Database,
    database: String,
}

impl Local {
    /// Starts a fresh `database`, the storage and both instances; the run's files (storage, the
    /// agents' directories) go in a new directory under `work_dir`.
    pub async fn start(
        agent: (PathBuf, Vec<String>),
        container_image: Option<&str>,
        database: &str,
        work_dir: &Path,
    ) -> anyhow::Result<Local> {
        let base = bootstrap::resolve(std::env::var("DATABASE_URL").ok(), Path::new(".fsync")).await?;
        let database_url = fresh_database(&base.url, database).await?;
        let dir = tempfile::Builder::new()
            .prefix("fsync-kpi-")
            .tempdir_in(work_dir)
            .with_context(|| format!("create the run's directory in {}", work_dir.display()))?;
        let storage_url = format!("file://{}", dir.path().join("storage").display());
        let launcher: Arc<dyn Launcher> = Arc::new(ProcessLauncher::new(&agent.0).with_leading_args(agent.1.clone()));
        let describe = launcher.describe();
        let secret = Secret::new(DEV_JWT_SECRET);
        let mut launchers = vec![("fast", true, launcher.clone()), ("legacy", false, launcher)];
        if let Some(image) = container_image {
            // The host's network: the instance listens on loopback (a measurement here, not a
            // deployment: see FSYNC_PREVIEW_NETWORK).
            let mut config = DockerConfig::new(image, "host");
            config.labels.insert(INSTANCE_LABEL.to_owned(), instance_of("containers"));
            let docker =
                DockerLauncher::connect(config).await.map_err(|e| anyhow::anyhow!("the Docker launcher: {e}"))?;
            launchers.push(("containers", true, Arc::new(docker)));
        }
        let mut instances = Vec::new();
        for (name, snapshot_hydration, launcher) in launchers {
            let orchestrator = OrchestratorConfig {
                sessions_dir: dir.path().join("sessions").join(name),
                launcher,
                snapshot_hydration,
                agent_exec: None,
                token_ttl_s: fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S,
                max_sessions_per_user: usize::MAX,
                instance: instance_of(name),
            };
            instances.push(start_instance(&database_url, &storage_url, &secret, orchestrator).await?);
        }
        // The run measures capacity, not one member's allowance: the write rate limit is lifted
        // (as the per-member session cap is above).
        connect(&database_url)
            .await?
            .execute("DELETE FROM fsync.rate_limits WHERE name = 'writes'", &[])
            .await
            .context("lift the write rate limit")?;
        let mut instances = instances.into_iter();
        let (fast, legacy) = (instances.next().expect("fast"), instances.next().expect("legacy"));
        Ok(Local {
            fast,
            legacy,
            containers: instances.next(),
            service_key: service_role_key(&secret),
            secret,
            database_url,
            agent: describe,
            dir,
            base,
            database: database.to_owned(),
        })
    }

    /// Stops both instances (and their agents) and drops the run's database.
    pub async fn stop(self) -> anyhow::Result<()> {
        for instance in [Some(self.fast), Some(self.legacy), self.containers].into_iter().flatten() {
            if let Some(stop) = instance.stop {
                let _ = stop.send(());
            }
            instance.serving.await.context("wait for the server")?.context("serve")?;
        }
        drop_database(&self.base.url, &self.database).await?;
        drop(self.base);
        Ok(())
    }

    /// The PostgreSQL server's version.
    pub async fn postgres_version(&self) -> anyhow::Result<String> {
        let client = connect(&self.database_url).await?;
        let row = client.query_one("SHOW server_version", &[]).await?;
        Ok(row.get(0))
    }
}

async fn start_instance(
    database_url: &str,
    storage_url: &str,
    secret: &Secret,
    orchestrator: OrchestratorConfig,
) -> anyhow::Result<Instance> {
    let store = PgStore::connect(database_url).await?;
    let storage = Storage::open_with(storage_url, |_| None).context("open the storage")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("listen on 127.0.0.1")?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = ServerBuilder::new(Arc::new(store.clone()))
        .secret(secret.clone())
        .realtime(RealtimeConfig::default())
        .platform(Arc::new(store), storage, orchestrator)
        .start()
        .await
        .context("start the server")?;
    if let Some(platform) = &server.platform {
        platform.set_public_url(&url);
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_tcp(listener, async {
        let _ = stopped.await;
    }));
    Ok(Instance { api: Api::new(&url, anon_key(secret), Transport::tcp()), url, stop: Some(stop), serving })
}

/// `url` with its database replaced by a fresh, empty `database`.
async fn fresh_database(url: &str, database: &str) -> anyhow::Result<String> {
    drop_database(url, database).await?;
    let kpi = with_database(url, database);
    bootstrap::create_database_if_missing(&kpi).await?;
    Ok(kpi)
}

async fn drop_database(url: &str, database: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "a plain database name: {database}"
    );
    let admin = connect(&with_database(url, "postgres")).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .with_context(|| format!("drop the database {database}"))?;
    Ok(())
}

/// A connection whose driver runs as a task of its own (ended with the client).
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect to {}", bootstrap::redact(url)))?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` naming `database` instead of its own.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_url_names_another_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/fsync", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}

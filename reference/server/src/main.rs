//! `fsync-reference`: the reference server (`serve`), and development tokens (`token`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use fsync_protocol::jwt::{self, Claims};
use fsync_reference::config::{self, Settings};
use fsync_reference::pg::bootstrap::{self, Source};
use fsync_reference::{PgStore, ServerBuilder};
use fsync_store::Sources;
use serde_json::Value;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "fsync-reference",
    version,
    about = "The fsync reference server: a Supabase-compatible stand-in for File System Sync v1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the migrations and serve the API (DATABASE_URL, FSYNC_JWT_SECRET, FSYNC_STATE_DIR,
    /// FSYNC_STORAGE_URL, FSYNC_SESSIONS_DIR, FSYNC_AGENT_BIN, FSYNC_AGENT_EXEC,
    /// FSYNC_USE_SNAPSHOT_HYDRATION, FSYNC_KEEP_CLIENT_BROADCAST).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = config::DEFAULT_ADDR)]
        addr: String,
    },
    /// Print a signed development JWT (signed with FSYNC_JWT_SECRET or the development default).
    Token {
        /// The `sub` claim: a user id (or a session id for container tokens).
        #[arg(long)]
        sub: Option<String>,
        /// The `role` claim: anon, authenticated or service_role.
        #[arg(long, default_value = "authenticated")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Extra claims; VALUE is parsed as JSON when it is JSON, else taken as a string.
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
    },
}

/// Prints a line to stdout, ignoring a closed stdout: the server must not die because whoever
/// started it stopped reading.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token { sub, role, ttl, claims } => {
            let settings = Settings::from_env();
            println!("{}", mint(&settings, sub, &role, ttl, &claims)?);
            Ok(())
        }
        Command::Serve { addr } => {
            init_tracing();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(Settings::from_env(), addr))
        }
    }
}

fn mint(settings: &Settings, sub: Option<String>, role: &str, ttl: u64, extra: &[String]) -> anyhow::Result<String> {
    let mut claims: Claims = jwt::claims_for(role, Sources::system().wall_s(), ttl);
    if let Some(sub) = sub {
        claims.insert("sub".into(), Value::String(sub));
    }
    for item in extra {
        let (key, value) = item.split_once('=').with_context(|| format!("--claim {item:?} is not KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        claims.insert(key.to_owned(), value);
    }
    Ok(jwt::sign(&settings.jwt_secret, &claims))
}

async fn serve(config: Settings, addr: String) -> anyhow::Result<()> {
    let database = bootstrap::resolve(config.database_url.clone(), &config.state_dir).await?;
    match &database.source {
        Source::Url => say!("Database: {} (DATABASE_URL)", bootstrap::redact(&database.url)),
        Source::Machine => say!("Database: {} (the PostgreSQL on {})", database.url, bootstrap::MACHINE_ADDR),
        Source::Private(cluster) => say!(
            "Database: {} (no DATABASE_URL and nothing on {}: started a private PostgreSQL in {})",
            database.url,
            bootstrap::MACHINE_ADDR,
            cluster.data_dir.display()
        ),
    }
    let store = PgStore::connect(&database.url).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listen on {addr}"))?;
    let local = listener.local_addr()?;
    say!("API URL: http://{local}");
    say!("anon key: {}", config::anon_key(&config.jwt_secret));
    say!("service_role key: {}", config::service_role_key(&config.jwt_secret));
    say!(
        "JWT secret: {}",
        if config.jwt_secret_is_default {
            "development default (FSYNC_JWT_SECRET is unset)"
        } else {
            "from FSYNC_JWT_SECRET"
        }
    );
    let storage_url = config.storage_url();
    let storage = config.storage()?;
    say!("Storage: {storage_url}");
    let orchestrator = config.orchestrator_launching().await.map_err(|e| anyhow::anyhow!("start agents: {e}"))?;
    say!(
        "Sessions: {} ({}, snapshot hydration {})",
        orchestrator.sessions_dir.display(),
        orchestrator.launcher.describe(),
        if orchestrator.snapshot_hydration { "on" } else { "off: FSYNC_USE_SNAPSHOT_HYDRATION is unset" }
    );
    let server = ServerBuilder::new(Arc::new(store.clone()))
        .secret(config.jwt_secret.clone())
        .realtime(config.realtime())
        .platform(Arc::new(store), storage, orchestrator)
        .start()
        .await
        .context("start realtime")?;
    if let (Some(url), Some(platform)) = (&config.public_url, &server.platform) {
        platform.set_public_url(url.clone());
        say!("Agents reach the API at {url} (FSYNC_PUBLIC_URL)");
    }
    server.serve_tcp(listener, shutdown_signal()).await?;
    // Dropping `database` stops a private cluster.
    drop(database);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

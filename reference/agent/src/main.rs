//! `fsync-agent --dir DIR [--exec CMD]`: the preview container's entrypoint (DESIGN §9, §12),
//! configured by PROJECT_ID, SESSION_ID, SNAPSHOT_URL, REALTIME_TOKEN and FSYNC_API_URL.

use clap::Parser;
use fsync_agent::session::{self, AgentConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fsync-agent",
    version,
    about = "Hydrates a project directory from its snapshot, then applies every change as it comes"
)]
struct Cli {
    /// The project directory to hydrate and keep in sync.
    #[arg(long)]
    dir: PathBuf,
    /// A command (run by /bin/sh in the project directory) started once hydrated.
    #[arg(long)]
    exec: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FSYNC_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    let config = match AgentConfig::from_lookup(|name| std::env::var(name).ok(), cli.dir, cli.exec) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fsync-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fsync-agent: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(session::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsync-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

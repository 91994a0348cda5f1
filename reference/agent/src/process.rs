//! The agent as a process: logs to stderr (`FSYNC_AGENT_LOG`), its configuration from the
//! environment (exactly the five variables), a single-threaded runtime of its own, and SIGTERM
//! or SIGINT as its shutdown. `fsync-agent` is this; a tool that carries the agent inside its own
//! binary (the load test's `agent` subcommand) runs the same.

use crate::config::Preview;
use crate::session::{self, AgentConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent's arguments (its variables come from the environment).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The project directory to hydrate and keep in sync.
    #[arg(long)]
    pub dir: PathBuf,
    /// A command (run by /bin/sh in the project directory) started once hydrated: the preview's
    /// dev server.
    #[arg(long)]
    pub exec: Option<String>,
    /// The port `--exec`'s dev server listens on (given to it as PORT): the session runs once it
    /// answers HTTP there.
    #[arg(long, requires = "exec")]
    pub preview_port: Option<u16>,
    /// The address it binds (given to it as HOST).
    #[arg(long, default_value = "127.0.0.1", requires = "preview_port")]
    pub preview_host: String,
}

/// Runs the agent as `args` say until it is told to stop; exit 0 on SIGTERM/SIGINT, 1 on
/// failure (the reason on stderr), 2 on bad configuration.
pub fn main(args: AgentArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FSYNC_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    let config = match AgentConfig::from_lookup(|name| std::env::var(name).ok(), args.dir, args.exec) {
        Ok(config) => {
            let preview = args.preview_port.map(|port| Preview { host: args.preview_host, port });
            AgentConfig { preview, ..config }
        }
        Err(e) => {
            eprintln!("fsync-agent: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the feed and the apply loop hand each event over without waking another
    // thread (extraction, the one long blocking job, runs on the blocking pool).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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

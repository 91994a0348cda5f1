//! `fsync-agent --dir DIR [--exec CMD]`: the preview container's entrypoint (DESIGN §9, §12),
//! configured by PROJECT_ID, SESSION_ID, SNAPSHOT_URL, REALTIME_TOKEN and FSYNC_API_URL.

use clap::Parser;
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
    fsync_agent::process::main(cli.dir, cli.exec)
}

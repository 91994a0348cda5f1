//! `fsync-agent --dir DIR [--exec CMD [--preview-port N [--preview-host H]]]`: the preview
//! container's entrypoint (DESIGN §9, §12), configured by PROJECT_ID, SESSION_ID, SNAPSHOT_URL,
//! REALTIME_TOKEN and FSYNC_API_URL.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fsync-agent",
    version,
    about = "Hydrates a project directory from its snapshot, then applies every change as it comes"
)]
struct Cli {
    #[command(flatten)]
    args: fsync_agent::process::AgentArgs,
}

fn main() -> ExitCode {
    fsync_agent::process::main(Cli::parse().args)
}

//! What the agent is told: the five variables of DESIGN §8 (checked, with what is missing or
//! malformed named), `--dir`, `--exec` and where that command's dev server listens
//! (`--preview-host`, `--preview-port`), and what it runs on (sources and transport).

use fsync_client::Transport;
use fsync_protocol::snapshot::ExtractLimits;
use fsync_store::Sources;
use std::path::PathBuf;
use uuid::Uuid;

/// What the agent is told (DESIGN §12): five variables, `--dir` and `--exec`.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub project: Uuid,
    pub session: Uuid,
    /// Empty: the legacy path (file by file through the API).
    pub snapshot_url: String,
    pub token: String,
    pub api_url: String,
    pub dir: PathBuf,
    pub exec: Option<String>,
    /// Where `exec`'s dev server listens: the session runs once it answers there.
    pub preview: Option<Preview>,
    pub limits: ExtractLimits,
    /// Where time and ids come from (the system unless given).
    pub sources: Sources,
    /// How the agent reaches the API (TCP unless given).
    pub transport: Transport,
    /// A bug planted by the simulator; `None` everywhere else.
    pub plant: Option<fsync_store::Plant>,
}

impl AgentConfig {
    /// Reads the five variables through `lookup`; names what is missing or malformed.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        dir: PathBuf,
        exec: Option<String>,
    ) -> Result<AgentConfig, String> {
        let var = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
        let uuid = |name: &str| -> Result<Uuid, String> {
            let value = var(name)?;
            Uuid::parse_str(value.trim()).map_err(|_| format!("{name}={value:?} is not a uuid"))
        };
        let token = var("REALTIME_TOKEN")?;
        if token.trim().is_empty() {
            return Err("REALTIME_TOKEN is empty".into());
        }
        let api_url = var("FSYNC_API_URL")?.trim_end_matches('/').to_owned();
        if !api_url.starts_with("http://") && !api_url.starts_with("https://") {
            return Err(format!("FSYNC_API_URL={api_url:?} is not an http(s) URL"));
        }
        Ok(AgentConfig {
            project: uuid("PROJECT_ID")?,
            session: uuid("SESSION_ID")?,
            snapshot_url: var("SNAPSHOT_URL")?.trim().to_owned(),
            token,
            api_url,
            dir,
            exec,
            preview: None,
            limits: ExtractLimits::default(),
            sources: Sources::system(),
            transport: Transport::tcp(),
            plant: None,
        })
    }
}

/// Where the preview's dev server listens, as the launcher chose: `exec` gets them as `HOST` and
/// `PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The address it binds (`127.0.0.1` for a process; `0.0.0.0` in a container, whose port is
    /// published).
    pub host: String,
    pub port: u16,
}

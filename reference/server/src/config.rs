//! Configuration from the environment (DESIGN §12), with the documented development defaults:
//! [`Settings`] reads every variable, in one place, with one flag parser.

use crate::orchestrator::{DockerConfig, DockerLauncher, OrchestratorConfig, ProcessLauncher};
use crate::realtime::RealtimeConfig;
use crate::storage::{Storage, StorageError};
use fsync_protocol::jwt::{self, Claims, Secret};
use fsync_protocol::snapshot::CONTAINER_TOKEN_MAX_TTL_S;
use fsync_store::launch::Launcher;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The JWT secret when `FSYNC_JWT_SECRET` is unset: the Supabase CLI's local development secret.
/// Never use it outside development.
pub const DEV_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:54321";
/// Where `serve` keeps local state (a private cluster, local storage) by default.
pub const DEFAULT_STATE_DIR: &str = ".fsync";

/// Fixed issue and expiry times of the printed API keys, so one secret always gives the same
/// anon and service_role keys (as `supabase start` prints the same keys every time).
const KEY_IAT: u64 = 1_700_000_000;
const KEY_EXP: u64 = 2_000_000_000;

/// The variables [`Settings`] reads, each once, here and nowhere else.
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "FSYNC_JWT_SECRET",
    "FSYNC_STATE_DIR",
    "FSYNC_STORAGE_URL",
    "FSYNC_SESSIONS_DIR",
    "FSYNC_AGENT_BIN",
    "FSYNC_AGENT_EXEC",
    "FSYNC_PREVIEW_DEPS",
    "FSYNC_AGENT_LAUNCHER",
    "FSYNC_PREVIEW_IMAGE",
    "FSYNC_PREVIEW_NETWORK",
    "FSYNC_PUBLIC_URL",
    "FSYNC_CONTAINER_TOKEN_TTL_S",
    flags::USE_SNAPSHOT_HYDRATION,
    flags::KEEP_CLIENT_BROADCAST,
    "FSYNC_INSTANCE_ID",
];

/// The `AWS_*` variables an `s3://` storage URL is configured by.
pub const AWS_VARIABLES: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
];

/// Everything `serve` is configured by (DESIGN §12), read from the environment in one place.
///
/// Defaults: the machine's PostgreSQL (else a private cluster) when `DATABASE_URL` is unset; the
/// development JWT secret; state in `./.fsync`; storage in `file://$FSYNC_STATE_DIR/storage`;
/// sessions in `$FSYNC_STATE_DIR/sessions`; the agent `fsync-agent` beside the server's binary
/// (else on `PATH`); no `--exec`; every plan flag off.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`; `None` means: the machine's server on 127.0.0.1:5432, else a private one.
    pub database_url: Option<String>,
    /// `FSYNC_JWT_SECRET`.
    pub jwt_secret: Secret,
    /// Whether the secret is the development default.
    pub jwt_secret_is_default: bool,
    /// `FSYNC_STATE_DIR` (default `./.fsync`).
    pub state_dir: PathBuf,
    /// `FSYNC_STORAGE_URL`: `file://DIR` or `s3://BUCKET`.
    pub storage_url: Option<String>,
    /// The `AWS_*` variables that are set.
    pub aws: BTreeMap<String, String>,
    /// `FSYNC_SESSIONS_DIR`.
    pub sessions_dir: Option<PathBuf>,
    /// `FSYNC_AGENT_BIN`.
    pub agent_bin: Option<PathBuf>,
    /// `FSYNC_AGENT_EXEC`: the command agents start once hydrated (the preview's dev server).
    pub agent_exec: Option<String>,
    /// `FSYNC_PREVIEW_DEPS`: a directory whose `node_modules` every process-launched preview
    /// shares (linked beside its project; `ci/preview-deps/install` makes one).
    pub preview_deps: Option<PathBuf>,
    /// `FSYNC_AGENT_LAUNCHER`: `process` (the default) or `docker`.
    pub agent_launcher: Option<String>,
    /// `FSYNC_PREVIEW_IMAGE`: the image of the Docker launcher's containers.
    pub preview_image: Option<String>,
    /// `FSYNC_PREVIEW_NETWORK`: the network they join (default `host`).
    pub preview_network: Option<String>,
    /// `FSYNC_PUBLIC_URL`: the API's URL as agents reach it (their `FSYNC_API_URL`, and signed
    /// URLs); by default `http://` and the address listened on.
    pub public_url: Option<String>,
    /// `FSYNC_CONTAINER_TOKEN_TTL_S`: how long container tokens live, 1 to 900 seconds (the
    /// default and the most).
    pub container_token_ttl_s: Option<String>,
    /// `FSYNC_USE_SNAPSHOT_HYDRATION` (plan flag).
    pub snapshot_hydration: bool,
    /// `FSYNC_KEEP_CLIENT_BROADCAST` (plan flag 3.3).
    pub keep_client_broadcast: bool,
    /// `FSYNC_INSTANCE_ID`: this instance's name in the session records.
    pub instance: Option<String>,
}

use fsync_protocol::flags::{self, flag};

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Settings {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = var("FSYNC_JWT_SECRET");
        Settings {
            database_url: var("DATABASE_URL"),
            jwt_secret_is_default: secret.is_none(),
            jwt_secret: Secret::new(secret.unwrap_or_else(|| DEV_JWT_SECRET.to_owned())),
            state_dir: var("FSYNC_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            storage_url: var("FSYNC_STORAGE_URL"),
            aws: AWS_VARIABLES.iter().filter_map(|name| var(name).map(|v| ((*name).to_owned(), v))).collect(),
            sessions_dir: var("FSYNC_SESSIONS_DIR").map(PathBuf::from),
            // Agents start in their session's directory: a relative path is the caller's.
            agent_bin: var("FSYNC_AGENT_BIN").map(|bin| absolute(Path::new(&bin))),
            agent_exec: var("FSYNC_AGENT_EXEC"),
            preview_deps: var("FSYNC_PREVIEW_DEPS").map(|dir| absolute(Path::new(&dir))),
            agent_launcher: var("FSYNC_AGENT_LAUNCHER"),
            preview_image: var("FSYNC_PREVIEW_IMAGE"),
            preview_network: var("FSYNC_PREVIEW_NETWORK"),
            public_url: var("FSYNC_PUBLIC_URL"),
            container_token_ttl_s: var("FSYNC_CONTAINER_TOKEN_TTL_S"),
            snapshot_hydration: flag(var(flags::USE_SNAPSHOT_HYDRATION).as_deref()),
            keep_client_broadcast: flag(var(flags::KEEP_CLIENT_BROADCAST).as_deref()),
            instance: var("FSYNC_INSTANCE_ID"),
        }
    }

    /// Realtime's settings: the defaults, with the client-broadcast flag.
    pub fn realtime(&self) -> RealtimeConfig {
        RealtimeConfig { keep_client_broadcast: self.keep_client_broadcast, ..RealtimeConfig::default() }
    }

    /// The storage URL, a `file://` default made absolute (agents run elsewhere).
    pub fn storage_url(&self) -> String {
        self.storage_url
            .clone()
            .unwrap_or_else(|| format!("file://{}", absolute(&self.state_dir.join("storage")).display()))
    }

    /// Opens the storage at [`Settings::storage_url`], with the `AWS_*` settings.
    pub fn storage(&self) -> Result<Storage, StorageError> {
        Storage::open_with(&self.storage_url(), |name| self.aws.get(name).cloned())
    }

    /// The orchestrator's settings: an absolute sessions directory, agents as child processes.
    pub fn orchestrator(&self) -> OrchestratorConfig {
        let sessions_dir = absolute(&self.sessions_dir.clone().unwrap_or_else(|| self.state_dir.join("sessions")));
        // The same host and directory is the same instance, started again.
        let instance = self.instance.clone().unwrap_or_else(|| format!("{}:{}", host_name(), sessions_dir.display()));
        OrchestratorConfig {
            instance,
            sessions_dir,
            launcher: Arc::new(self.process_launcher()),
            snapshot_hydration: self.snapshot_hydration,
            agent_exec: self.agent_exec.clone(),
            token_ttl_s: CONTAINER_TOKEN_MAX_TTL_S,
            max_sessions_per_user: crate::orchestrator::MAX_SESSIONS_PER_USER,
        }
    }
}

impl Settings {
    /// Agents as child processes of `FSYNC_AGENT_BIN`, sharing `FSYNC_PREVIEW_DEPS`.
    fn process_launcher(&self) -> ProcessLauncher {
        let launcher = ProcessLauncher::new(self.agent_bin.clone().unwrap_or_else(default_agent_bin));
        match &self.preview_deps {
            Some(deps) => launcher.with_preview_deps(deps),
            None => launcher,
        }
    }

    /// Whether `FSYNC_PREVIEW_DEPS` names dependencies the process launcher can share (the Docker
    /// launcher does not read it: the preview image holds its own, at `/node_modules`).
    fn check_preview_deps(&self, choice: &LauncherChoice) -> Result<(), String> {
        let Some(deps) = &self.preview_deps else { return Ok(()) };
        if let LauncherChoice::Docker(_) = choice {
            return Ok(());
        }
        if !deps.join("node_modules").is_dir() {
            return Err(format!(
                "FSYNC_PREVIEW_DEPS={} holds no node_modules (install one: ci/preview-deps/install {})",
                deps.display(),
                deps.display()
            ));
        }
        Ok(())
    }
}

/// How `serve` starts agents (`FSYNC_AGENT_LAUNCHER`).
#[derive(Debug, Clone, PartialEq)]
pub enum LauncherChoice {
    /// Child processes of `FSYNC_AGENT_BIN` (the default).
    Process,
    /// Containers of `FSYNC_PREVIEW_IMAGE` on `FSYNC_PREVIEW_NETWORK`.
    Docker(DockerConfig),
}

impl Settings {
    /// The launcher the settings name, or why they name none.
    pub fn launcher_choice(&self) -> Result<LauncherChoice, String> {
        match self.agent_launcher.as_deref().map(str::trim) {
            None | Some("process") => Ok(LauncherChoice::Process),
            Some("docker") => {
                let image =
                    self.preview_image.clone().ok_or("FSYNC_AGENT_LAUNCHER=docker needs FSYNC_PREVIEW_IMAGE")?;
                // No default: `host` would give previews (which run the project's own code) this
                // machine's loopback, and whatever listens there (a trust-auth PostgreSQL).
                let network = self.preview_network.clone().ok_or(
                    "FSYNC_AGENT_LAUNCHER=docker needs FSYNC_PREVIEW_NETWORK: a Docker network that reaches the API \
                     and nothing else (or `host`, which shares this machine's loopback with the previews)",
                )?;
                Ok(LauncherChoice::Docker(DockerConfig::new(image, network)))
            }
            Some(other) => Err(format!("FSYNC_AGENT_LAUNCHER is `process` or `docker`, not `{other}`")),
        }
    }

    /// The container tokens' lifetime, or why the setting is not one.
    pub fn token_ttl_s(&self) -> Result<u64, String> {
        match self.container_token_ttl_s.as_deref().map(str::trim) {
            None => Ok(CONTAINER_TOKEN_MAX_TTL_S),
            Some(text) => match text.parse::<u64>() {
                Ok(ttl) if (1..=CONTAINER_TOKEN_MAX_TTL_S).contains(&ttl) => Ok(ttl),
                _ => Err(format!(
                    "FSYNC_CONTAINER_TOKEN_TTL_S is whole seconds from 1 to {CONTAINER_TOKEN_MAX_TTL_S}, not `{text}`"
                )),
            },
        }
    }

    /// The orchestrator's settings with the launcher they name, connected (a Docker launcher
    /// reaches its engine and finds its image first), and the container tokens' lifetime.
    pub async fn orchestrator_launching(&self) -> Result<OrchestratorConfig, Box<dyn std::error::Error + Send + Sync>> {
        let mut config = self.orchestrator();
        config.token_ttl_s = self.token_ttl_s()?;
        let choice = self.launcher_choice()?;
        self.check_preview_deps(&choice)?;
        if let LauncherChoice::Docker(mut docker) = choice {
            docker.labels.insert(crate::orchestrator::docker::INSTANCE_LABEL.to_owned(), config.instance.clone());
            config.launcher = Arc::new(DockerLauncher::connect(docker).await?) as Arc<dyn Launcher>;
        }
        Ok(config)
    }
}

/// This machine's host name (`localhost` when it has none).
fn host_name() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    match ok && end > 0 {
        true => String::from_utf8_lossy(&name[..end]).into_owned(),
        false => "localhost".to_owned(),
    }
}

/// `path` made absolute against the working directory.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `fsync-agent` beside the running binary, else on `PATH`.
fn default_agent_bin() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("fsync-agent")));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("fsync-agent"),
    }
}

/// The project's anon key for `secret`.
pub fn anon_key(secret: &Secret) -> String {
    api_key(secret, "anon")
}

/// The project's service_role key for `secret`.
pub fn service_role_key(secret: &Secret) -> String {
    api_key(secret, "service_role")
}

fn api_key(secret: &Secret, role: &str) -> String {
    let mut claims: Claims = jwt::claims_for(role, KEY_IAT, KEY_EXP - KEY_IAT);
    claims.insert("iss".into(), "supabase-demo".into());
    jwt::sign(secret, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let settings = Settings::from_lookup(|_| None);
        assert!(settings.jwt_secret_is_default);
        assert_eq!(settings.jwt_secret.expose(), DEV_JWT_SECRET);
        assert_eq!(settings.database_url, None);
        assert_eq!(settings.state_dir, PathBuf::from(".fsync"));
        assert!(!settings.snapshot_hydration && !settings.keep_client_broadcast, "every plan flag off");
        assert!(settings.storage_url().starts_with("file:///") && settings.storage_url().ends_with(".fsync/storage"));
        let orchestrator = settings.orchestrator();
        assert!(orchestrator.sessions_dir.is_absolute() && orchestrator.sessions_dir.ends_with(".fsync/sessions"));
        assert!(orchestrator.launcher.describe().ends_with("fsync-agent"), "{}", orchestrator.launcher.describe());
        assert!(orchestrator.instance.ends_with(".fsync/sessions") && orchestrator.instance.contains(':'));
        assert!(!settings.realtime().keep_client_broadcast);

        let settings = Settings::from_lookup(|name| match name {
            "FSYNC_JWT_SECRET" => Some("s".repeat(40)),
            "DATABASE_URL" => Some("postgres://x/y".into()),
            "FSYNC_STATE_DIR" => Some("/srv/fsync".into()),
            "FSYNC_USE_SNAPSHOT_HYDRATION" => Some(" On ".into()),
            "FSYNC_KEEP_CLIENT_BROADCAST" => Some("yes".into()),
            "FSYNC_AGENT_BIN" => Some("/opt/agent".into()),
            "FSYNC_AGENT_EXEC" => Some("npm run dev".into()),
            "FSYNC_INSTANCE_ID" => Some("blue-1".into()),
            "AWS_REGION" => Some("eu-west-1".into()),
            "AWS_SESSION_TOKEN" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(settings.orchestrator().instance, "blue-1");
        assert!(!settings.jwt_secret_is_default);
        assert_eq!(settings.database_url.as_deref(), Some("postgres://x/y"));
        assert_eq!(settings.storage_url(), "file:///srv/fsync/storage");
        assert_eq!(settings.orchestrator().sessions_dir, PathBuf::from("/srv/fsync/sessions"));
        assert_eq!(settings.orchestrator().launcher.describe(), "agent /opt/agent");
        assert_eq!(settings.orchestrator().agent_exec.as_deref(), Some("npm run dev"));
        assert!(settings.snapshot_hydration && settings.orchestrator().snapshot_hydration);
        assert!(settings.realtime().keep_client_broadcast);
        assert_eq!(settings.launcher_choice(), Ok(LauncherChoice::Process));
        assert_eq!(settings.aws.keys().collect::<Vec<_>>(), ["AWS_REGION"], "empty values are unset");
    }

    #[test]
    fn preview_dependencies_are_shared_by_the_process_launcher_and_must_be_installed() {
        let deps = tempfile::tempdir().unwrap();
        let dir = deps.path().display().to_string();
        let settings = Settings::from_lookup(|name| (name == "FSYNC_PREVIEW_DEPS").then(|| dir.clone()));
        let missing = settings.check_preview_deps(&LauncherChoice::Process).unwrap_err();
        assert!(missing.contains("holds no node_modules") && missing.contains("ci/preview-deps/install"), "{missing}");
        std::fs::create_dir(deps.path().join("node_modules")).unwrap();
        assert_eq!(settings.check_preview_deps(&LauncherChoice::Process), Ok(()));
        let shared = format!(", previews sharing {}/node_modules", deps.path().display());
        assert!(
            settings.orchestrator().launcher.describe().ends_with(&shared),
            "{}",
            settings.orchestrator().launcher.describe()
        );
        let missing = Settings::from_lookup(|name| (name == "FSYNC_PREVIEW_DEPS").then(|| "/no/such/dir".to_owned()));
        let docker = LauncherChoice::Docker(DockerConfig::new("fsync/preview:1", "previews"));
        assert_eq!(missing.check_preview_deps(&docker), Ok(()), "the preview image holds its own");
    }

    #[test]
    fn the_launcher_is_named_by_the_environment() {
        let settings = |pairs: &'static [(&'static str, &'static str)]| {
            Settings::from_lookup(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
        };
        assert_eq!(settings(&[("FSYNC_AGENT_LAUNCHER", "process")]).launcher_choice(), Ok(LauncherChoice::Process));
        let docker = settings(&[
            ("FSYNC_AGENT_LAUNCHER", "docker"),
            ("FSYNC_PREVIEW_IMAGE", "fsync/preview:1"),
            ("FSYNC_PREVIEW_NETWORK", "host"),
        ]);
        assert_eq!(docker.launcher_choice(), Ok(LauncherChoice::Docker(DockerConfig::new("fsync/preview:1", "host"))));
        let no_network = settings(&[("FSYNC_AGENT_LAUNCHER", "docker"), ("FSYNC_PREVIEW_IMAGE", "fsync/preview:1")]);
        let no_network = no_network.launcher_choice().unwrap_err();
        assert!(no_network.contains("FSYNC_PREVIEW_NETWORK") && no_network.contains("loopback"), "{no_network}");
        let on_a_network = settings(&[
            ("FSYNC_AGENT_LAUNCHER", "docker"),
            ("FSYNC_PREVIEW_IMAGE", "fsync/preview:1"),
            ("FSYNC_PREVIEW_NETWORK", "previews"),
        ]);
        let Ok(LauncherChoice::Docker(config)) = on_a_network.launcher_choice() else { panic!("docker") };
        assert_eq!(config.network, "previews");
        let no_image = settings(&[("FSYNC_AGENT_LAUNCHER", "docker")]).launcher_choice().unwrap_err();
        assert!(no_image.contains("FSYNC_PREVIEW_IMAGE"), "{no_image}");
        let unknown = settings(&[("FSYNC_AGENT_LAUNCHER", "vm")]).launcher_choice().unwrap_err();
        assert!(unknown.contains("`process` or `docker`, not `vm`"), "{unknown}");
    }

    #[test]
    fn container_tokens_live_at_most_fifteen_minutes() {
        let ttl = |value: &'static str| Settings::from_lookup(|_| Some(value.to_owned())).token_ttl_s();
        assert_eq!(Settings::from_lookup(|_| None).token_ttl_s(), Ok(CONTAINER_TOKEN_MAX_TTL_S));
        assert_eq!(ttl("30"), Ok(30));
        for bad in ["0", "901", "ten", "-5"] {
            let err = ttl(bad).unwrap_err();
            assert!(err.contains("FSYNC_CONTAINER_TOKEN_TTL_S") && err.contains(&format!("not `{bad}`")), "{err}");
        }
    }

    #[test]
    fn one_flag_parser() {
        for on in ["1", "true", "TRUE", " yes ", "on"] {
            assert!(flag(Some(on)), "{on}");
        }
        for off in ["0", "false", "off", "no", "", "enabled"] {
            assert!(!flag(Some(off)), "{off}");
        }
        assert!(!flag(None));
    }

    #[test]
    fn keys_are_stable_for_a_secret() {
        let secret = Secret::new(DEV_JWT_SECRET);
        assert_eq!(anon_key(&secret), anon_key(&secret));
        let claims = jwt::verify(&secret, &service_role_key(&secret), KEY_IAT + 1).unwrap();
        assert_eq!(claims["role"], "service_role");
    }
}

//! Agents as Docker containers (what production runs): one container per session from the
//! preview image, through the Docker Engine API. The container sees exactly the five variables
//! (the image's own environment aside), runs with memory, CPU and pids limits, a read-only root
//! filesystem (the image's `/app` volume and a `/tmp` tmpfs are writable), every capability
//! dropped and no privilege gain, on a configurable network, labelled with its session and
//! project. Terminating stops it with a grace period; killing kills it. The engine tells how it
//! ended and its last log line; then the container is removed, and an instance started again
//! removes the containers of the sessions it failed.

use super::ports::{PortLease, PreviewPorts};
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, HostConfigLogConfig, PortBinding, PortMap,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;
use fsync_store::launch::{AgentControl, AgentExit, AgentLaunch, Launched, Launcher};
use fsync_store::platform::BoxFuture;
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Where the preview image keeps the project (its `/app` is a volume, writable).
pub const PROJECT_DIR: &str = "/app/project";
/// The port a session's dev server listens on inside its container (published on the host's
/// 127.0.0.1 at a port the engine picks; on the `host` network, a free port of the host's).
pub const PREVIEW_PORT: u16 = 5173;
/// The label naming a preview container's session (and its project, and the instance that
/// started it).
pub const SESSION_LABEL: &str = "fsync.session";
pub const PROJECT_LABEL: &str = "fsync.project";
pub const INSTANCE_LABEL: &str = "fsync.instance";
/// How long a stopped container has to exit before the engine kills it.
const STOP_GRACE_S: i32 = 5;

type BoxError = Box<dyn Error + Send + Sync>;

/// How preview containers are made.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// The preview image (`FSYNC_PREVIEW_IMAGE`).
    pub image: String,
    /// The network they join (`FSYNC_PREVIEW_NETWORK`): `host` (they reach a server listening
    /// on loopback), `bridge`, or a network's name.
    pub network: String,
    pub memory_bytes: i64,
    /// CPUs, in billionths.
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// The size of the `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// Labels every container gets besides its session's and project's (`serve` adds
    /// [`INSTANCE_LABEL`]).
    pub labels: BTreeMap<String, String>,
}

impl DockerConfig {
    /// `image` on `network`, with 1 GiB, one CPU, 512 processes and 64 MiB of `/tmp`.
    pub fn new(image: impl Into<String>, network: impl Into<String>) -> DockerConfig {
        DockerConfig {
            image: image.into(),
            network: network.into(),
            memory_bytes: 1 << 30,
            nano_cpus: 1_000_000_000,
            pids_limit: 512,
            tmp_bytes: 64 << 20,
            labels: BTreeMap::new(),
        }
    }
}

/// Starts each session's agent as a container of [`DockerConfig::image`].
#[derive(Debug, Clone)]
pub struct DockerLauncher {
    docker: Docker,
    pub config: DockerConfig,
    /// The host's ports its dev servers hold on the `host` network.
    ports: Arc<PreviewPorts>,
}

impl DockerLauncher {
    /// Connects to the engine (`DOCKER_HOST`, else its local socket) at the API version both
    /// speak, and checks that the image exists.
    pub async fn connect(config: DockerConfig) -> Result<DockerLauncher, BoxError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| format!("reach the Docker engine: {e}"))?;
        let docker = docker.negotiate_version().await.map_err(|e| format!("no Docker engine answers: {e}"))?;
        docker.inspect_image(&config.image).await.map_err(|e| {
            format!("the preview image {} is not here (build it with ci/images/build): {e}", config.image)
        })?;
        Ok(DockerLauncher { docker, config, ports: Arc::default() })
    }

    /// The container of `launch`'s session, as the engine is asked to make it.
    pub fn container_for(&self, launch: &AgentLaunch, preview_port: Option<u16>) -> ContainerCreateBody {
        let mut cmd = vec!["--dir".to_owned(), PROJECT_DIR.to_owned()];
        let config = &self.config;
        let on_host = config.network == "host";
        let mut published = None;
        if let Some(exec) = &launch.exec {
            cmd.extend(["--exec".to_owned(), exec.clone()]);
        }
        if let (Some(_), Some(port)) = (&launch.exec, preview_port) {
            // On the host's network the container binds the host's loopback itself; elsewhere,
            // every address of its own, published on the host's loopback only.
            let host = if on_host { "127.0.0.1" } else { "0.0.0.0" };
            cmd.extend(["--preview-port".to_owned(), port.to_string(), "--preview-host".to_owned(), host.to_owned()]);
            published = (!on_host).then(|| loopback_published(port));
        }
        let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        labels.insert(SESSION_LABEL.to_owned(), launch.session_id.to_string());
        labels.insert(PROJECT_LABEL.to_owned(), launch.project_id.to_string());
        let host_config = HostConfig {
            memory: Some(config.memory_bytes),
            memory_swap: Some(config.memory_bytes),
            nano_cpus: Some(config.nano_cpus),
            pids_limit: Some(config.pids_limit),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), format!("rw,nosuid,nodev,size={}", config.tmp_bytes))])),
            // A chatty dev server cannot fill the engine's disk with its log.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            network_mode: Some(config.network.clone()),
            port_bindings: published.clone(),
            init: Some(true),
            ..HostConfig::default()
        };
        ContainerCreateBody {
            image: Some(config.image.clone()),
            env: Some(launch.env().iter().map(|(name, value)| format!("{name}={value}")).collect()),
            cmd: Some(cmd),
            labels: Some(labels),
            host_config: Some(host_config),
            exposed_ports: published.map(|ports| ports.into_keys().collect()),
            ..ContainerCreateBody::default()
        }
    }

    /// Creates and starts the container of `launch`'s session: its name, where a browser reaches
    /// its dev server (when it runs one) and the host port it holds (on the `host` network).
    async fn start(&self, launch: &AgentLaunch) -> Result<(String, Option<String>, Option<PortLease>), BoxError> {
        let name = container_name(launch.session_id);
        let on_host = self.config.network == "host";
        let (preview_port, lease) = match (&launch.exec, on_host) {
            (None, _) => (None, None),
            (Some(_), false) => (Some(PREVIEW_PORT), None),
            (Some(_), true) => {
                let lease = self.ports.take().map_err(|e| format!("a port for the dev server: {e}"))?;
                (Some(lease.port), Some(lease))
            }
        };
        let options = CreateContainerOptions { name: Some(name.clone()), ..CreateContainerOptions::default() };
        self.docker
            .create_container(Some(options), self.container_for(launch, preview_port))
            .await
            .map_err(|e| format!("create the container {name} of {}: {e}", self.config.image))?;
        if let Err(e) = self.docker.start_container(&name, None).await {
            remove(&self.docker, &name).await;
            return Err(format!("start the container {name}: {e}").into());
        }
        let url = match preview_port {
            Some(port) if on_host => Some(format!("http://127.0.0.1:{port}/")),
            Some(port) => match published_port(&self.docker, &name, port).await {
                Ok(host_port) => Some(format!("http://127.0.0.1:{host_port}/")),
                Err(e) => {
                    remove(&self.docker, &name).await;
                    return Err(e);
                }
            },
            None => None,
        };
        Ok((name, url, lease))
    }
}

/// `port`/tcp published on the host's 127.0.0.1 only, at a port the engine picks.
pub fn loopback_published(port: u16) -> PortMap {
    let binding = PortBinding { host_ip: Some("127.0.0.1".to_owned()), host_port: Some(String::new()) };
    HashMap::from([(format!("{port}/tcp"), Some(vec![binding]))])
}

/// The host port the engine published container `name`'s `port` on.
pub async fn published_port(docker: &Docker, name: &str, port: u16) -> Result<u16, BoxError> {
    let inspected = docker.inspect_container(name, None).await.map_err(|e| format!("inspect {name}: {e}"))?;
    let ports = inspected.network_settings.and_then(|n| n.ports).unwrap_or_default();
    let bindings = ports.get(&format!("{port}/tcp")).cloned().flatten().unwrap_or_default();
    let host_port = bindings.into_iter().find_map(|b| b.host_port.and_then(|p| p.parse().ok()));
    host_port.ok_or_else(|| format!("the engine published no host port for {name}'s {port}/tcp").into())
}

/// A session's container's name.
pub fn container_name(session: Uuid) -> String {
    format!("fsync-preview-{}", session.simple())
}

impl Launcher for DockerLauncher {
    fn launch(&self, launch: AgentLaunch) -> BoxFuture<'_, Result<Launched, BoxError>> {
        Box::pin(async move {
            let (name, preview_url, lease) = self.start(&launch).await?;
            let guard = RemoveOnDrop { docker: self.docker.clone(), name: Some(name.clone()) };
            let control = Control { docker: self.docker.clone(), name: name.clone() };
            let docker = self.docker.clone();
            let exit = async move {
                let _lease = lease;
                let exit = ended(&docker, &name).await;
                remove(&docker, &name).await;
                guard.disarm();
                exit
            };
            Ok(Launched { pid: None, control: Box::new(control), exit: Box::pin(exit), preview_url })
        })
    }

    fn describe(&self) -> String {
        format!("docker containers of {} on network {}", self.config.image, self.config.network)
    }

    /// Removes the containers of `sessions`, and every container labelled with this launcher's
    /// instance (a freshly started instance watches none: one its last run could not remove,
    /// such as one killed as it shut down, goes too).
    fn remove_leftovers<'a>(&'a self, sessions: &'a [Uuid]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let wanted: BTreeSet<String> = sessions.iter().map(Uuid::to_string).collect();
            let instance = self.config.labels.get(INSTANCE_LABEL);
            let filters = HashMap::from([("label".to_owned(), vec![SESSION_LABEL.to_owned()])]);
            let options =
                ListContainersOptions { all: true, filters: Some(filters), ..ListContainersOptions::default() };
            let containers =
                self.docker.list_containers(Some(options)).await.map_err(|e| format!("list containers: {e}"))?;
            for container in containers {
                let label = |name: &str| container.labels.as_ref().and_then(|labels| labels.get(name));
                let session = label(SESSION_LABEL);
                let ours = instance.is_some() && label(INSTANCE_LABEL) == instance;
                if let (Some(id), true) = (&container.id, ours || session.is_some_and(|s| wanted.contains(s))) {
                    tracing::info!(container = %id, session = ?session, "removing a failed session's container");
                    remove(&self.docker, id).await;
                }
            }
            Ok(())
        })
    }
}

/// Waits until the container has exited, then reads how from the engine (its exit code, whether
/// it ran out of memory) and its last log line. An engine that does not answer is asked again
/// each second; a container the engine no longer has has ended.
async fn ended(docker: &Docker, name: &str) -> AgentExit {
    loop {
        // A wait cut short (the engine restarting) is asked again while the container runs.
        let _ = docker.wait_container(name, None).next().await;
        match docker.inspect_container(name, None).await {
            Ok(inspect) => {
                let state = inspect.state.unwrap_or_default();
                if matches!(
                    state.status,
                    Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::RESTARTING)
                ) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                let code = state.exit_code.unwrap_or(-1);
                let how = match (state.oom_killed, code) {
                    (Some(true), _) => format!("exit code {code}: killed for want of memory"),
                    (_, 137) => "exit code 137 (SIGKILL)".to_owned(),
                    (_, 143) => "exit code 143 (SIGTERM)".to_owned(),
                    _ => format!("exit code {code}"),
                };
                let last_words = match state.error.filter(|e| !e.is_empty()) {
                    Some(error) => Some(error),
                    None => last_log_line(docker, name).await,
                };
                return AgentExit { how, last_words };
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message }) => {
                return AgentExit { how: format!("its container is gone ({message})"), last_words: None }
            }
            // The engine did not answer (restarting): ask again.
            Err(e) => {
                tracing::warn!(container = name, error = %e, "could not inspect the container; asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The container's last non-empty log line (the agent logs to stderr).
async fn last_log_line(docker: &Docker, name: &str) -> Option<String> {
    let options = LogsOptions { stdout: true, stderr: true, tail: "20".to_owned(), ..LogsOptions::default() };
    let mut logs = docker.logs(name, Some(options));
    let mut last = None;
    while let Some(Ok(chunk)) = logs.next().await {
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            last = Some(line.trim_end().to_owned());
        }
    }
    last
}

/// Removes a container and its anonymous volumes, whatever its state.
async fn remove(docker: &Docker, name: &str) {
    if let Err(e) = remove_container(docker, name).await {
        tracing::warn!(container = name, error = %e, "could not remove the container");
    }
}

/// Removes a container and its anonymous volumes, whatever its state (what every user of the
/// engine here does with a container it is done with).
pub async fn remove_container(docker: &Docker, name: &str) -> Result<(), bollard::errors::Error> {
    let options = RemoveContainerOptions { force: true, v: true, ..RemoveContainerOptions::default() };
    docker.remove_container(name, Some(options)).await
}

/// Removes the container when its exit was never read (the instance stopped watching it), as a
/// process launcher's child is killed when dropped.
struct RemoveOnDrop {
    docker: Docker,
    name: Option<String>,
}

impl RemoveOnDrop {
    /// The container was removed.
    fn disarm(mut self) {
        self.name = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let (Some(name), Ok(runtime)) = (self.name.take(), tokio::runtime::Handle::try_current()) {
            let docker = self.docker.clone();
            runtime.spawn(async move { remove(&docker, &name).await });
        }
    }
}

/// Stops or kills one container.
struct Control {
    docker: Docker,
    name: String,
}

impl AgentControl for Control {
    fn terminate(&self) {
        let (docker, name) = (self.docker.clone(), self.name.clone());
        tokio::spawn(async move {
            let options = StopContainerOptions { t: Some(STOP_GRACE_S), signal: None };
            if let Err(e) = docker.stop_container(&name, Some(options)).await {
                tracing::debug!(container = %name, error = %e, "stop");
            }
        });
    }

    fn kill(&self) {
        let (docker, name) = (self.docker.clone(), self.name.clone());
        tokio::spawn(async move {
            let options = KillContainerOptions { signal: "SIGKILL".to_owned() };
            if let Err(e) = docker.kill_container(&name, Some(options)).await {
                tracing::debug!(container = %name, error = %e, "kill");
            }
        });
    }
}

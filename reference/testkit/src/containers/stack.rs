//! The whole stack on private Docker networks (issue 22): PostgreSQL and the S3 server on a
//! backend network ([`Services`], which several stacks may share, one after another), and
//! server containers of the code under test ([`Stack`], with a fresh database and secret) on it
//! and on a second network, the previews', where each server starts every session's agent as a
//! preview container through the engine's socket (the Docker launcher): a preview reaches the
//! servers and nothing else. Agents reach a stack's servers under one alias ([`Stack::api_host`],
//! whichever answers) or each its own server ([`ServerSettings::own_url`]); the test reaches each
//! server on its own 127.0.0.1 port, and the database through PostgreSQL's. Dropping a stack
//! removes its servers and their preview containers; dropping the services removes everything on
//! both networks, and the networks.

use super::{OnNetwork, OwnImages, PostgresContainer, S3Container};
use crate::TestDb;
use anyhow::Context;
use fsync_client::transport::Transport;
use fsync_protocol::jwt::{self, Secret};
use fsync_reference::orchestrator::docker::{published_port, remove_container, INSTANCE_LABEL};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;
use testcontainers::bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest,
};
use testcontainers::bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, StopContainerOptions,
};
use testcontainers::bollard::Docker;
use uuid::Uuid;

/// The port servers listen on in their containers.
const SERVER_PORT: u16 = 54321;
/// The engine's socket, which servers get to start preview containers.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// PostgreSQL and the S3 server on a network of their own, and the previews' network.
pub struct Services {
    /// The backend network: PostgreSQL, S3 and the servers.
    pub network: String,
    /// The previews' network: the servers and the preview containers.
    pub previews: String,
    pub docker: Docker,
    postgres: OnNetwork,
    s3: (OnNetwork, S3Container),
    pg: PostgresContainer,
}

impl Services {
    /// The two networks, PostgreSQL and the S3 server (one bucket) on the backend one.
    pub async fn start(images: &super::Images) -> anyhow::Result<Services> {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await.context("reach the engine")?;
        let network = format!("fsync-stack-{}", &crate::new_id().simple().to_string()[..12]);
        let previews = format!("{network}-previews");
        for name in [&network, &previews] {
            let request =
                NetworkCreateRequest { name: name.clone(), driver: Some("bridge".into()), ..Default::default() };
            docker.create_network(request).await.with_context(|| format!("create the network {name}"))?;
        }
        // Until they are handed over, a failure takes the networks down with what is on them.
        let services = Services::start_on(images, docker, network.clone(), previews.clone()).await;
        if services.is_err() {
            take_down(&[&network, &previews]);
        }
        services
    }

    async fn start_on(
        images: &super::Images,
        docker: Docker,
        network: String,
        previews: String,
    ) -> anyhow::Result<Services> {
        let on = |role: &str| OnNetwork { network: network.clone(), name: format!("{network}-{role}") };
        let postgres = on("postgres");
        let pg = PostgresContainer::start_on(images, Some(&postgres)).await?;
        let s3_at = on("s3");
        let s3 = S3Container::start_on(images, "fsync", Some(&s3_at)).await?;
        Ok(Services { network, previews, docker, postgres, s3: (s3_at, s3), pg })
    }

    /// PostgreSQL's host name on the backend network.
    pub fn postgres_host(&self) -> &str {
        &self.postgres.name
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        take_down(&[&self.network, &self.previews]);
    }
}

/// Removes every container on `networks`, then the networks.
fn take_down(networks: &[&str]) {
    for network in networks {
        let on_network = docker_cli(&["ps", "-aq", "--filter", &format!("network={network}")]);
        if let Err(e) = on_network.and_then(|ids| remove_containers(&ids)) {
            eprintln!("could not empty the network {network}: {e}");
        }
    }
    for network in networks {
        if let Err(e) = docker_cli(&["network", "rm", network]) {
            eprintln!("could not remove the network {network}: {e}");
        }
    }
}

/// How one server container runs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Its name in the stack (its container and `FSYNC_INSTANCE_ID` add the stack's prefix).
    pub name: String,
    pub snapshot_hydration: bool,
    pub client_broadcast: bool,
    /// `FSYNC_CONTAINER_TOKEN_TTL_S`, when not the default.
    pub token_ttl_s: Option<u64>,
    /// Its agents reach it under its own name; otherwise under the stack's API alias.
    pub own_url: bool,
    /// `FSYNC_AGENT_EXEC`: the previews' dev server (their port published on 127.0.0.1).
    pub agent_exec: Option<String>,
}

impl ServerSettings {
    /// Snapshot hydration on, client broadcast off, 15-minute tokens, the stack's API alias.
    pub fn new(name: &str) -> ServerSettings {
        ServerSettings {
            name: name.to_owned(),
            snapshot_hydration: true,
            client_broadcast: false,
            token_ttl_s: None,
            own_url: false,
            agent_exec: None,
        }
    }
}

/// One server container.
#[derive(Debug, Clone)]
pub struct ServerContainer {
    /// Its name in the stack.
    pub name: String,
    /// The container's name: also its `FSYNC_INSTANCE_ID` and its host name on the network.
    pub container: String,
    /// Its published port on 127.0.0.1.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`: the API from the test.
    pub url: String,
}

/// Server containers with a fresh database and secret on shared services.
pub struct Stack {
    pub services: Arc<Services>,
    pub own: OwnImages,
    pub secret: Secret,
    /// The stack's database, through PostgreSQL's loopback port (seed and inspect as superuser).
    pub db: TestDb,
    pub docker: Docker,
    /// Prefixes its containers' names.
    prefix: String,
    servers: Vec<ServerContainer>,
    /// Every instance it ever started (their preview containers are removed with it).
    instances: Vec<String>,
}

impl Stack {
    /// Services of its own, and no server yet.
    pub async fn start(images: &super::Images, own: OwnImages) -> anyhow::Result<Stack> {
        Stack::on(Arc::new(Services::start(images).await?), own).await
    }

    /// A fresh database and secret on `services`, and no server yet.
    pub async fn on(services: Arc<Services>, own: OwnImages) -> anyhow::Result<Stack> {
        let db = TestDb::migrated_on(&services.pg.admin_url).await?;
        let secret = Secret::new(format!("stack-secret-{}", crate::new_id()));
        let prefix = format!("fsync-{}", &crate::new_id().simple().to_string()[..10]);
        let docker = services.docker.clone();
        Ok(Stack { services, own, secret, db, docker, prefix, servers: Vec::new(), instances: Vec::new() })
    }

    /// The host name every server of this stack has on the network (the agents' API host
    /// unless [`ServerSettings::own_url`]).
    pub fn api_host(&self) -> String {
        format!("{}-api", self.prefix)
    }

    /// The network the preview containers run on.
    pub fn preview_network(&self) -> &str {
        &self.services.previews
    }

    /// Starts server `name` with the defaults of [`ServerSettings::new`].
    pub async fn start_server(&mut self, name: &str) -> anyhow::Result<ServerContainer> {
        self.start_server_with(ServerSettings::new(name)).await
    }

    /// Starts a server container as `settings` say, joined to the network under its container's
    /// name and [`Stack::api_host`], and waits until it answers.
    pub async fn start_server_with(&mut self, settings: ServerSettings) -> anyhow::Result<ServerContainer> {
        let container = format!("{}-{}", self.prefix, settings.name);
        let options = CreateContainerOptions { name: Some(container.clone()), ..Default::default() };
        let body = self.server_body(&container, &settings)?;
        self.docker.create_container(Some(options), body).await.context("create a server")?;
        if !self.instances.contains(&container) {
            self.instances.push(container.clone());
        }
        // The previews' network too, where its previews reach it (API 1.41 joins one network at
        // creation).
        let aliases = Some(vec![self.api_host(), container.clone()]);
        let join = NetworkConnectRequest {
            container: container.clone(),
            endpoint_config: Some(EndpointSettings { aliases, ..Default::default() }),
        };
        self.docker.connect_network(self.preview_network(), join).await.context("join the previews' network")?;
        self.docker.start_container(&container, None).await.context("start a server")?;
        let port = published_port(&self.docker, &container, SERVER_PORT)
            .await
            .map_err(|e| anyhow::anyhow!("the server's published port: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = ServerContainer { name: settings.name, container, addr, url: format!("http://{addr}") };
        self.wait_healthy(&server).await?;
        self.servers.push(server.clone());
        Ok(server)
    }

    /// What a server container is made of: the environment of DESIGN §12 for this stack.
    fn server_body(&self, container: &str, settings: &ServerSettings) -> anyhow::Result<ContainerCreateBody> {
        let (s3_at, s3) = &self.services.s3;
        let host = if settings.own_url { container.to_owned() } else { self.api_host() };
        let on_off = |on: bool| if on { "1" } else { "0" }.to_owned();
        let mut env = vec![
            ("DATABASE_URL", format!("postgres://postgres@{}:5432/{}", self.services.postgres.name, self.db.name)),
            ("FSYNC_JWT_SECRET", self.secret.expose().to_owned()),
            ("FSYNC_STORAGE_URL", format!("s3://{}", s3.bucket)),
            ("AWS_ENDPOINT_URL", format!("http://{}:9000", s3_at.name)),
            ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("FSYNC_INSTANCE_ID", container.to_owned()),
            ("FSYNC_AGENT_LAUNCHER", "docker".to_owned()),
            ("FSYNC_PREVIEW_IMAGE", self.own.preview.clone()),
            ("FSYNC_PREVIEW_NETWORK", self.services.previews.clone()),
            ("FSYNC_PUBLIC_URL", format!("http://{host}:{SERVER_PORT}")),
            ("FSYNC_USE_SNAPSHOT_HYDRATION", on_off(settings.snapshot_hydration)),
            ("FSYNC_KEEP_CLIENT_BROADCAST", on_off(settings.client_broadcast)),
        ];
        if let Some(ttl) = settings.token_ttl_s {
            env.push(("FSYNC_CONTAINER_TOKEN_TTL_S", ttl.to_string()));
        }
        if let Some(exec) = &settings.agent_exec {
            env.push(("FSYNC_AGENT_EXEC", exec.clone()));
        }
        let socket_group = std::fs::metadata(DOCKER_SOCKET).with_context(|| format!("stat {DOCKER_SOCKET}"))?.gid();
        let mut host_config = HostConfig {
            binds: Some(vec![format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}")]),
            group_add: Some(vec![socket_group.to_string()]),
            network_mode: Some(self.services.network.clone()),
            ..Default::default()
        };
        super::loopback_only(SERVER_PORT)(&mut host_config);
        Ok(ContainerCreateBody {
            image: Some(self.own.server.clone()),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    async fn wait_healthy(&self, server: &ServerContainer) -> anyhow::Result<()> {
        let deadline = crate::now() + Duration::from_secs(60);
        let health = format!("{}/health", server.url);
        loop {
            if let Ok(answer) = reqwest::get(&health).await {
                if answer.status().is_success() {
                    return Ok(());
                }
            }
            let running = self.docker.inspect_container(&server.container, None).await?.state.and_then(|s| s.running);
            if running != Some(true) || crate::now() > deadline {
                let logs = docker_cli(&["logs", "--tail", "30", &server.container]).unwrap_or_else(|e| e);
                let why = if running == Some(true) { "did not answer within 60 s" } else { "exited" };
                anyhow::bail!("the server {} {why} ({health}); its log:\n{logs}", server.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills a server container at once (SIGKILL) and removes it: its preview containers run on.
    pub async fn kill_server(&mut self, name: &str) -> anyhow::Result<()> {
        let server = self.take_server(name)?;
        let kill = KillContainerOptions { signal: "SIGKILL".into() };
        self.docker.kill_container(&server.container, Some(kill)).await.context("kill the server")?;
        self.remove(&server.container).await
    }

    /// Stops a server container (SIGTERM: it stops its sessions first, within 20 s) and removes it.
    pub async fn stop_server(&mut self, name: &str) -> anyhow::Result<()> {
        let server = self.take_server(name)?;
        let stop = StopContainerOptions { t: Some(20), signal: None };
        self.docker.stop_container(&server.container, Some(stop)).await.context("stop the server")?;
        self.remove(&server.container).await
    }

    fn take_server(&mut self, name: &str) -> anyhow::Result<ServerContainer> {
        let at = self.servers.iter().position(|s| s.name == name).with_context(|| format!("no server {name}"))?;
        Ok(self.servers.remove(at))
    }

    async fn remove(&self, container: &str) -> anyhow::Result<()> {
        remove_container(&self.docker, container).await.with_context(|| format!("remove {container}"))
    }

    /// The preview containers this stack's servers started and that are still there.
    pub async fn previews(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for instance in &self.instances {
            let filters = HashMap::from([("label".to_owned(), vec![format!("{INSTANCE_LABEL}={instance}")])]);
            let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
            for container in self.docker.list_containers(Some(options)).await.context("list the previews")? {
                names.extend(
                    container.names.unwrap_or_default().into_iter().map(|n| n.trim_start_matches('/').to_owned()),
                );
            }
        }
        Ok(names)
    }

    /// Takes `container` off the stack's network (its connections drop; nothing reaches it).
    pub async fn disconnect(&self, container: &str) -> anyhow::Result<()> {
        let away = NetworkDisconnectRequest { container: container.to_owned(), force: Some(true) };
        self.docker
            .disconnect_network(self.preview_network(), away)
            .await
            .with_context(|| format!("disconnect {container}"))
    }

    /// Puts `container` back on the stack's network.
    pub async fn reconnect(&self, container: &str) -> anyhow::Result<()> {
        let back = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(EndpointSettings::default()),
        };
        self.docker
            .connect_network(self.preview_network(), back)
            .await
            .with_context(|| format!("reconnect {container}"))
    }

    /// The API of `server`, as a client of the test reaches it.
    pub fn api(&self, server: &ServerContainer) -> fsync_client::Api {
        fsync_client::Api::new(server.url.clone(), self.anon_key(), Transport::tcp())
    }

    /// The anon key of this stack's secret.
    pub fn anon_key(&self) -> String {
        fsync_reference::config::anon_key(&self.secret)
    }

    /// The service-role key of this stack's secret (what no preview container may hold).
    pub fn service_key(&self) -> String {
        fsync_reference::config::service_role_key(&self.secret)
    }

    /// A user profile, inserted directly (as the superuser), and its token.
    pub async fn create_user(&self) -> anyhow::Result<(Uuid, String)> {
        let id = crate::new_id();
        let client = self.db.connect().await?;
        client
            .execute(
                "INSERT INTO public.user_profiles (id, email) VALUES ($1, $2)",
                &[&id, &format!("{id}@example.test")],
            )
            .await?;
        let now = crate::now_s();
        let claims = crate::claims(json!({
            "role": "authenticated", "sub": id, "email": format!("{id}@example.test"), "iat": now, "exp": now + 3600,
        }));
        Ok((id, jwt::sign(&self.secret, &claims)))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut ids = String::new();
        for instance in &self.instances {
            ids.push_str(
                &docker_cli(&["ps", "-aq", "--filter", &format!("label={INSTANCE_LABEL}={instance}")])
                    .unwrap_or_default(),
            );
            ids.push_str(&docker_cli(&["ps", "-aq", "--filter", &format!("name=^{instance}$")]).unwrap_or_default());
        }
        if let Err(e) = remove_containers(&ids) {
            eprintln!("could not take the stack down: {e}");
        }
    }
}

/// The files under `dir` in `container`, path (relative) → hex SHA-256, hashed in the container
/// by `sha256sum` (a large tree is not copied out).
pub fn hashes_in(container: &str, dir: &str) -> Result<BTreeMap<String, String>, String> {
    let script = format!("cd '{dir}' && find . -type f -exec sha256sum {{}} +");
    let listing = docker_cli(&["exec", container, "sh", "-c", &script])?;
    listing
        .lines()
        .map(|line| match line.split_once("  ./") {
            Some((hash, path)) if !line.starts_with('\\') => Ok((path.to_owned(), hash.to_owned())),
            _ => Err(format!("an unexpected line from sha256sum in {container}: {line}")),
        })
        .collect()
}

/// Removes the containers of `ids` (whitespace-separated), with their volumes.
fn remove_containers(ids: &str) -> Result<String, String> {
    match ids.split_whitespace().collect::<Vec<_>>() {
        ids if ids.is_empty() => Ok(String::new()),
        ids => docker_cli(&[&["rm", "-f", "-v"][..], &ids].concat()),
    }
}

/// Runs the `docker` CLI (for what a test reads or cleans up; the launcher uses the API): its
/// output, or why it failed.
pub fn docker_cli(args: &[&str]) -> Result<String, String> {
    match std::process::Command::new("docker").args(args).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("docker {}: {e}", args.join(" "))),
    }
}

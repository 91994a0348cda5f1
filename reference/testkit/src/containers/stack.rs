//! The whole stack on a private Docker network (issue 22): PostgreSQL, the S3 server, and server
//! containers of the code under test, each starting every session's agent as a preview
//! container on the same network through the engine's socket (the Docker launcher). Agents
//! reach the servers under one network alias, `api` (whichever answers); the test reaches each
//! server on its own 127.0.0.1 port, and the database through PostgreSQL's. Dropping the stack
//! removes every container on its network, preview containers included, and the network.

use super::{OnNetwork, OwnImages, PostgresContainer, S3Container};
use crate::TestDb;
use anyhow::Context;
use fsync_client::transport::Transport;
use fsync_protocol::jwt::{self, Secret};
use serde_json::json;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use testcontainers::bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use testcontainers::bollard::query_parameters::{CreateContainerOptions, KillContainerOptions, RemoveContainerOptions};
use testcontainers::bollard::Docker;
use uuid::Uuid;

/// The alias every server has on the stack's network: the agents' API host.
pub const API_ALIAS: &str = "api";
/// The port servers listen on in their containers.
const SERVER_PORT: u16 = 54321;
/// The engine's socket, which servers get to start preview containers.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// One server container.
#[derive(Debug, Clone)]
pub struct ServerContainer {
    /// Its `FSYNC_INSTANCE_ID`, also its name on the network.
    pub instance: String,
    /// The container's name.
    pub container: String,
    /// `http://127.0.0.1:<port>`: the API from the test.
    pub url: String,
}

/// PostgreSQL, S3 and servers on a network of their own.
pub struct Stack {
    pub network: String,
    pub own: OwnImages,
    pub secret: Secret,
    /// The stack's database, through PostgreSQL's loopback port (seed and inspect as superuser).
    pub db: TestDb,
    pub docker: Docker,
    postgres: OnNetwork,
    s3: (OnNetwork, S3Container),
    servers: Vec<ServerContainer>,
    _postgres: PostgresContainer,
}

impl Stack {
    /// A network, PostgreSQL with a migrated database, and the S3 server; no server yet.
    pub async fn start(images: &super::Images, own: OwnImages) -> anyhow::Result<Stack> {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await.context("reach the engine")?;
        let id = crate::new_id().simple().to_string();
        let network = format!("fsync-stack-{}", &id[..12]);
        let request =
            NetworkCreateRequest { name: network.clone(), driver: Some("bridge".into()), ..Default::default() };
        docker.create_network(request).await.with_context(|| format!("create the network {network}"))?;
        let on = |role: &str| OnNetwork { network: network.clone(), name: format!("{network}-{role}") };
        let postgres = on("postgres");
        let pg = PostgresContainer::start_on(images, Some(&postgres)).await?;
        let db = TestDb::migrated_on(&pg.admin_url).await?;
        let s3_at = on("s3");
        let s3 = S3Container::start_on(images, "fsync", Some(&s3_at)).await?;
        let secret = Secret::new(format!("stack-secret-{}", crate::new_id()));
        Ok(Stack { network, own, secret, db, docker, postgres, s3: (s3_at, s3), servers: Vec::new(), _postgres: pg })
    }

    /// Starts a server container named `instance` (and so its instance id), joined to the
    /// network under its name and [`API_ALIAS`], and waits until it answers.
    pub async fn start_server(&mut self, instance: &str) -> anyhow::Result<ServerContainer> {
        let container = format!("{}-{instance}", self.network);
        let options = CreateContainerOptions { name: Some(container.clone()), ..Default::default() };
        self.docker.create_container(Some(options), self.server_body(instance)?).await.context("create a server")?;
        self.docker.start_container(&container, None).await.context("start a server")?;
        let inspect = self.docker.inspect_container(&container, None).await?;
        let port = inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| ports.get(&format!("{SERVER_PORT}/tcp")).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
            .context("the server's published port")?;
        let server =
            ServerContainer { instance: instance.to_owned(), container, url: format!("http://127.0.0.1:{port}") };
        self.wait_healthy(&server).await?;
        self.servers.push(server.clone());
        Ok(server)
    }

    /// What a server container is made of: the environment of DESIGN §12 for this stack.
    fn server_body(&self, instance: &str) -> anyhow::Result<ContainerCreateBody> {
        let s3 = &self.s3.1;
        let env = [
            ("DATABASE_URL", format!("postgres://postgres@{}:5432/{}", self.postgres.name, self.db.name)),
            ("FSYNC_JWT_SECRET", self.secret.expose().to_owned()),
            ("FSYNC_STORAGE_URL", format!("s3://{}", s3.bucket)),
            ("AWS_ENDPOINT_URL", format!("http://{}:9000", self.s3.0.name)),
            ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("FSYNC_INSTANCE_ID", instance.to_owned()),
            ("FSYNC_AGENT_LAUNCHER", "docker".to_owned()),
            ("FSYNC_PREVIEW_IMAGE", self.own.preview.clone()),
            ("FSYNC_PREVIEW_NETWORK", self.network.clone()),
            ("FSYNC_PUBLIC_URL", format!("http://{API_ALIAS}:{SERVER_PORT}")),
            ("FSYNC_USE_SNAPSHOT_HYDRATION", "1".to_owned()),
        ];
        let socket_group = std::fs::metadata(DOCKER_SOCKET).with_context(|| format!("stat {DOCKER_SOCKET}"))?.gid();
        let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) };
        let host_config = HostConfig {
            port_bindings: Some(HashMap::from([(format!("{SERVER_PORT}/tcp"), Some(vec![binding]))])),
            binds: Some(vec![format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}")]),
            group_add: Some(vec![socket_group.to_string()]),
            network_mode: Some(self.network.clone()),
            ..Default::default()
        };
        let endpoint =
            EndpointSettings { aliases: Some(vec![API_ALIAS.to_owned(), instance.to_owned()]), ..Default::default() };
        Ok(ContainerCreateBody {
            image: Some(self.own.server.clone()),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.network.clone(), endpoint)])),
            }),
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
                anyhow::bail!("the server {} {why} ({health}); its log:\n{logs}", server.instance);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills a server container at once (SIGKILL) and removes it: its preview containers run on.
    pub async fn kill_server(&mut self, instance: &str) -> anyhow::Result<()> {
        let at = self.servers.iter().position(|s| s.instance == instance).context("no such server")?;
        let server = self.servers.remove(at);
        let kill = KillContainerOptions { signal: "SIGKILL".into() };
        self.docker.kill_container(&server.container, Some(kill)).await.context("kill the server")?;
        let remove = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        self.docker.remove_container(&server.container, Some(remove)).await.context("remove the server")?;
        Ok(())
    }

    /// The API of `server`, as a client of the test reaches it.
    pub fn api(&self, server: &ServerContainer) -> fsync_client::Api {
        fsync_client::Api::new(server.url.clone(), fsync_reference::config::anon_key(&self.secret), Transport::tcp())
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

    /// The service-role key of this stack's secret (what no preview container may hold).
    pub fn service_key(&self) -> String {
        fsync_reference::config::service_role_key(&self.secret)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let on_network = docker_cli(&["ps", "-aq", "--filter", &format!("network={}", self.network)]);
        let removed = on_network.and_then(|ids| match ids.split_whitespace().collect::<Vec<_>>() {
            ids if ids.is_empty() => Ok(String::new()),
            ids => docker_cli(&[&["rm", "-f", "-v"][..], &ids].concat()),
        });
        if let Err(e) = removed.and_then(|_| docker_cli(&["network", "rm", &self.network])) {
            eprintln!("could not take the stack down: {e}");
        }
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

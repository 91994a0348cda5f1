//! Containers for the tests (issue 22): whether they can run here, the images `ci/images/build`
//! made, PostgreSQL and the S3 server (s3s-fs, SigV4) in containers.
//!
//! A machine without a Docker engine, or without the images, skips the container tests and says
//! why; `FSYNC_REQUIRE_DOCKER=1` (CI sets it, with `ci/ensure-docker` and `ci/images/build`
//! before the tests) turns the skip into a failure. Ports are published on 127.0.0.1 only.

use anyhow::Context;
use std::path::PathBuf;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// What the container tests need, if this machine has it; `None` (after saying why) when it does
/// not and `FSYNC_REQUIRE_DOCKER` is unset. With it set, a missing part panics.
pub async fn available(what: &str) -> Option<Images> {
    match Images::here().await {
        Ok(images) => Some(images),
        Err(why) if std::env::var_os("FSYNC_REQUIRE_DOCKER").is_some_and(|v| v == "1") => {
            panic!("{what}: FSYNC_REQUIRE_DOCKER=1, but {why:#}")
        }
        Err(why) => {
            eprintln!("skipped {what}: {why:#} (FSYNC_REQUIRE_DOCKER=1 fails instead)");
            None
        }
    }
}

/// The images `ci/images/build` tagged (by a hash of their inputs).
#[derive(Debug, Clone)]
pub struct Images {
    pub postgres: String,
    pub s3: String,
}

impl Images {
    /// The engine answers, and every image the tests use exists.
    async fn here() -> anyhow::Result<Images> {
        engine_answers().await?;
        let images = Images { postgres: tag("FSYNC_IMAGE_POSTGRES")?, s3: tag("FSYNC_IMAGE_S3")? };
        for image in [&images.postgres, &images.s3] {
            let exists = tokio::process::Command::new("docker")
                .args(["image", "inspect", "--format", "{{.Id}}", image])
                .output()
                .await
                .context("run `docker image inspect`")?;
            if !exists.status.success() {
                anyhow::bail!("the image {image} is not built (run `bash ci/images/build`)");
            }
        }
        Ok(images)
    }
}

/// Whether the engine's socket takes a connection.
async fn engine_answers() -> anyhow::Result<()> {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    tokio::net::UnixStream::connect(&socket)
        .await
        .with_context(|| format!("no Docker engine answers on {socket} (run `bash ci/ensure-docker`)"))?;
    Ok(())
}

/// An image's tag: from the environment, else from `target/images/tags.env`.
fn tag(name: &str) -> anyhow::Result<String> {
    if let Some(tag) = std::env::var(name).ok().filter(|t| !t.is_empty()) {
        return Ok(tag);
    }
    let tags = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/images/tags.env");
    let text = std::fs::read_to_string(&tags)
        .with_context(|| format!("{name} is not set and {} is missing (run `bash ci/images/build`)", tags.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_owned)
        .with_context(|| format!("{} names no {name}", tags.display()))
}

/// A container's port published on 127.0.0.1 only (and no other).
fn loopback_only(port: u16) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |config: &mut HostConfig| {
        config.publish_all_ports = Some(false);
        let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) };
        config.port_bindings = Some([(format!("{port}/tcp"), Some(vec![binding]))].into_iter().collect());
    }
}

/// PostgreSQL 15 in a container (trust auth for `postgres`), removed when dropped.
pub struct PostgresContainer {
    /// The superuser URL of its `postgres` database, through its port on 127.0.0.1.
    pub admin_url: String,
    _container: ContainerAsync<GenericImage>,
}

impl PostgresContainer {
    /// Starts one from `images.postgres` and waits until it accepts connections.
    pub async fn start(images: &Images) -> anyhow::Result<PostgresContainer> {
        let (name, tag) = images.postgres.split_once(':').context("an image tag is name:tag")?;
        let container = GenericImage::new(name, tag)
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
            .with_host_config_modifier(loopback_only(5432))
            .start()
            .await
            .with_context(|| format!("start a container of {}", images.postgres))?;
        let port = container.get_host_port_ipv4(5432).await.context("its published port")?;
        Ok(PostgresContainer {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            _container: container,
        })
    }
}

/// The S3 server (s3s-fs, SigV4) in a container with one bucket, removed when dropped.
pub struct S3Container {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    _container: ContainerAsync<GenericImage>,
}

impl S3Container {
    /// Starts one from `images.s3` serving `bucket`, with fresh credentials.
    pub async fn start(images: &Images, bucket: &str) -> anyhow::Result<S3Container> {
        let (name, tag) = images.s3.split_once(':').context("an image tag is name:tag")?;
        let (access_key, secret_key) = (format!("fsync-{}", crate::new_id().simple()), crate::new_id().to_string());
        let container = GenericImage::new(name, tag)
            .with_exposed_port(9000.tcp())
            .with_wait_for(WaitFor::message_on_stdout("s3s-fs serving /data"))
            .with_host_config_modifier(loopback_only(9000))
            .with_env_var("BUCKET", bucket)
            .with_env_var("S3_ACCESS_KEY", &access_key)
            .with_env_var("S3_SECRET_KEY", &secret_key)
            .start()
            .await
            .with_context(|| format!("start a container of {}", images.s3))?;
        let port = container.get_host_port_ipv4(9000).await.context("its published port")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        // The log line comes just before it listens: wait until it answers.
        let deadline = crate::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(crate::now() < deadline, "the S3 server did not listen on {endpoint} within 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(S3Container { endpoint, bucket: bucket.to_owned(), access_key, secret_key, _container: container })
    }

    /// The storage URL and `AWS_*` settings that reach this server with its credentials.
    pub fn storage(&self) -> (String, Vec<(String, String)>) {
        let settings = [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REGION", "us-east-1"),
        ];
        (format!("s3://{}", self.bucket), settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

//! PostgreSQL and the S3 server in containers, on 127.0.0.1 ports and, when given one, on a
//! Docker network under a name of their own (where other containers reach them).

use super::{loopback_only, Images};
use anyhow::Context;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Where a service container also sits: a Docker network and its name there.
#[derive(Debug, Clone)]
pub struct OnNetwork {
    pub network: String,
    pub name: String,
}

/// A container request on `on`'s network under its name, or on the default bridge.
fn placed(image: GenericImage, on: Option<&OnNetwork>) -> testcontainers::ContainerRequest<GenericImage> {
    match on {
        Some(on) => image.with_network(on.network.clone()).with_container_name(on.name.clone()),
        None => image.into(),
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
        PostgresContainer::start_on(images, None).await
    }

    /// Like [`PostgresContainer::start`], on a network as well.
    pub async fn start_on(images: &Images, on: Option<&OnNetwork>) -> anyhow::Result<PostgresContainer> {
        let (name, tag) = images.postgres.split_once(':').context("an image tag is name:tag")?;
        let image = GenericImage::new(name, tag)
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"));
        let container = placed(image, on)
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
        S3Container::start_on(images, bucket, None).await
    }

    /// Like [`S3Container::start`], on a network as well.
    pub async fn start_on(images: &Images, bucket: &str, on: Option<&OnNetwork>) -> anyhow::Result<S3Container> {
        let (name, tag) = images.s3.split_once(':').context("an image tag is name:tag")?;
        let (access_key, secret_key) = (format!("fsync-{}", crate::new_id().simple()), crate::new_id().to_string());
        let image = GenericImage::new(name, tag)
            .with_exposed_port(9000.tcp())
            .with_wait_for(WaitFor::message_on_stdout("s3s-fs serving /data"));
        let container = placed(image, on)
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

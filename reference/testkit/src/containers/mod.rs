//! Containers for the tests (issue 22): whether they can run here, the images `ci/images/build`
//! made, PostgreSQL and the S3 server (s3s-fs, SigV4) in containers, the preview and server
//! images of the code under test ([`own_images`]), and the whole stack on a private network
//! ([`Stack`]).
//!
//! A machine without a Docker engine, or without the images, skips the container tests and says
//! why; `FSYNC_REQUIRE_DOCKER=1` (CI sets it, with `ci/ensure-docker` and `ci/images/build`
//! before the tests) turns the skip into a failure. Ports are published on 127.0.0.1 only.

mod own;
mod services;
mod stack;

pub use own::{own_images, OwnImages};
pub use services::{OnNetwork, PostgresContainer, S3Container};
pub use stack::{docker_cli, hashes_in, ServerContainer, ServerSettings, Services, Stack};

use anyhow::Context;
use std::path::PathBuf;
use testcontainers::bollard::models::HostConfig;

/// What the container tests need, if this machine has it; `None` (after saying why) when it does
/// not and `FSYNC_REQUIRE_DOCKER` is unset. With it set, a missing part panics.
pub async fn available(what: &str) -> Option<Images> {
    match Images::here().await {
        Ok(images) => Some(images),
        Err(why) => skipped(what, why),
    }
}

/// Says why `what` is skipped, or panics when `FSYNC_REQUIRE_DOCKER=1`.
pub(crate) fn skipped<T>(what: &str, why: impl std::fmt::Display) -> Option<T> {
    if std::env::var_os("FSYNC_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
        panic!("{what}: FSYNC_REQUIRE_DOCKER=1, but {why:#}")
    }
    eprintln!("skipped {what}: {why:#} (FSYNC_REQUIRE_DOCKER=1 fails instead)");
    None
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
pub(crate) async fn engine_answers() -> anyhow::Result<()> {
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
    assignment(&text, name).with_context(|| format!("{} names no {name}", tags.display()))
}

/// The value of the line `NAME=value` in `text` (what `ci/images/build` writes and prints).
pub(crate) fn assignment(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('=')).map(str::to_owned)
}

/// A container's port published on 127.0.0.1 only (and no other).
pub(crate) fn loopback_only(port: u16) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |config: &mut HostConfig| {
        config.publish_all_ports = Some(false);
        config.port_bindings = Some(fsync_reference::orchestrator::docker::loopback_published(port));
    }
}

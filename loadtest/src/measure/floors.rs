//! What the machine itself can do, measured on the same inputs: `unzip` of the snapshot zip a
//! large session hydrated from, a plain recursive copy of the extracted tree, one small file
//! written and renamed into place (what every applied edit does at least), a process spawn
//! plus one HTTP round trip (the floor of a session start), and a container of the preview image
//! that exits at once (the floor of a session start with the Docker launcher).

use crate::clock::{self, now};
use anyhow::{bail, Context};
use fsync_client::Api;
use std::path::Path;
use std::process::Command;

/// Whether `program` can be run from the `PATH`.
pub fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    !matches!(found, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Milliseconds `unzip -q` takes to extract `zip` into `dest` (created).
pub fn unzip_ms(zip: &Path, dest: &Path) -> anyhow::Result<f64> {
    let started = now();
    let status =
        Command::new("unzip").arg("-q").arg("-o").arg(zip).arg("-d").arg(dest).status().context("run unzip")?;
    if !status.success() {
        bail!("unzip {} failed: {status}", zip.display());
    }
    Ok(clock::ms_since(started))
}

/// Milliseconds `cp -r` takes to copy `from` to `to`.
pub fn copy_ms(from: &Path, to: &Path) -> anyhow::Result<f64> {
    let started = now();
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status().context("run cp")?;
    if !status.success() {
        bail!("cp -r {} failed: {status}", from.display());
    }
    Ok(clock::ms_since(started))
}

/// Milliseconds to write each of `n` small new files into a staging directory under `dir` and
/// rename it into place beside it (a file per sample, as every edit of the delta run is).
pub fn file_write_ms(dir: &Path, n: usize) -> anyhow::Result<Vec<f64>> {
    let (staging, live) = (dir.join("staging"), dir.join("live"));
    for d in [&staging, &live] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = now();
        let staged = staging.join(i.to_string());
        std::fs::write(&staged, format!("export const edit = {i};\n")).context("write a staged file")?;
        std::fs::rename(&staged, live.join(format!("e-{i}.ts"))).context("rename a file into place")?;
        samples.push(clock::ms_since(started));
    }
    Ok(samples)
}

/// Milliseconds to spawn `agent --version`-like `program args` and wait for it, plus one
/// `/health` round trip: what any session start must pay at least.
pub async fn spawn_and_round_trip_ms(program: &Path, args: &[String], api: &Api) -> anyhow::Result<f64> {
    let started = now();
    let status = tokio::process::Command::new(program)
        .args(args)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("spawn the agent")?;
    if !status.success() {
        bail!("{} --help failed: {status}", program.display());
    }
    let health = api.request(http::Method::GET, "/health", None, &[], Vec::<u8>::new()).await?;
    if health.status != 200 {
        bail!("/health answered {}", health.status);
    }
    Ok(clock::ms_since(started))
}

/// Milliseconds from creating a container of `image` whose command exits at once (`/bin/true`)
/// to the engine reporting it exited, `n` times, through the Engine API as the Docker launcher
/// does (each container is removed afterwards, untimed: a session start does not remove one).
pub async fn container_run_ms(image: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::CreateContainerOptions;
    use futures_util::StreamExt;
    let docker =
        bollard::Docker::connect_with_local_defaults()?.negotiate_version().await.context("reach the engine")?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("fsync-kpi-floor-{}-{i}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec!["/bin/true".to_owned()]),
            cmd: Some(Vec::new()),
            host_config: Some(HostConfig { network_mode: Some("host".into()), ..HostConfig::default() }),
            ..ContainerCreateBody::default()
        };
        let started = now();
        let options = CreateContainerOptions { name: Some(name.clone()), ..CreateContainerOptions::default() };
        docker.create_container(Some(options), body).await.with_context(|| format!("create a container of {image}"))?;
        let ran = async {
            docker.start_container(&name, None).await?;
            docker.wait_container(&name, None).next().await.transpose()?;
            Ok::<_, bollard::errors::Error>(())
        }
        .await;
        samples.push(clock::ms_since(started));
        let _ = fsync_reference::orchestrator::docker::remove_container(&docker, &name).await;
        ran.with_context(|| format!("run a container of {image}"))?;
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_program_is_not_installed() {
        assert!(super::installed("cp"));
        assert!(!super::installed("fsync-no-such-program-here"));
    }
}

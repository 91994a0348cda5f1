//! The project's own images, the preview (the agent) and the server, built from the binaries this
//! test program was built with (`ci/images/build --binaries DIR`, tagged by their hash, so a
//! second build of the same code reuses them): a container test runs the binaries its build made
//! (`cargo test --workspace` builds them; `cargo test -p fsync-testkit` alone does not rebuild
//! them).
//! `FSYNC_IMAGE_PREVIEW` and `FSYNC_IMAGE_SERVER`, when both are set, name other images instead.

use super::{assignment, skipped, Images};
use anyhow::Context;
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

/// The preview and server images' tags.
#[derive(Debug, Clone)]
pub struct OwnImages {
    pub preview: String,
    pub server: String,
}

/// Built once per test program.
static BUILT: OnceCell<Result<OwnImages, String>> = OnceCell::const_new();

/// The service images and the project's own, if this machine can have them; `None` (after
/// saying why) when it cannot and `FSYNC_REQUIRE_DOCKER` is unset. With it set, a missing part
/// panics.
pub async fn own_images(what: &str) -> Option<(Images, OwnImages)> {
    let images = super::available(what).await?;
    match BUILT.get_or_init(|| async { build().await.map_err(|e| format!("{e:#}")) }).await {
        Ok(own) => Some((images, own.clone())),
        Err(why) => skipped(what, why),
    }
}

async fn build() -> anyhow::Result<OwnImages> {
    if let (Ok(preview), Ok(server)) = (std::env::var("FSYNC_IMAGE_PREVIEW"), std::env::var("FSYNC_IMAGE_SERVER")) {
        return Ok(OwnImages { preview, server });
    }
    let binaries = binaries_dir()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = tokio::process::Command::new("bash")
        .arg(root.join("ci/images/build"))
        .arg("--binaries")
        .arg(&binaries)
        .output()
        .await
        .context("run ci/images/build")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "ci/images/build --binaries {} failed: {}",
        binaries.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let tag = |name: &str| assignment(&stdout, name).with_context(|| format!("ci/images/build printed no {name}"));
    Ok(OwnImages { preview: tag("FSYNC_IMAGE_PREVIEW")?, server: tag("FSYNC_IMAGE_SERVER")? })
}

/// The target profile directory this program was built into, holding `fsync-agent` and
/// `fsync-reference` (`cargo test --workspace` builds them).
fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("find this program")?;
    let has_both = |dir: &Path| ["fsync-agent", "fsync-reference"].iter().all(|bin| dir.join(bin).is_file());
    exe.ancestors().skip(1).take(2).find(|dir| has_both(dir)).map(Path::to_path_buf).with_context(|| {
        format!(
            "no fsync-agent and fsync-reference beside {} (build them: cargo build -p fsync-agent -p fsync-reference)",
            exe.display()
        )
    })
}

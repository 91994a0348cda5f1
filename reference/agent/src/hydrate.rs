//! Hydration (DESIGN §9 step 2): the project directory as the snapshot has it, or, on the legacy
//! path, as `list_current_files` has it. Either returns the directory and the base seq.

use crate::api::Api;
use crate::apply::ProjectDir;
use crate::extract;
use anyhow::Context;
use fsync_protocol::events::FileChange;
use fsync_store::Sources;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How much larger than the files it holds a snapshot zip may be (headers, directory).
const ZIP_OVERHEAD_BYTES: u64 = 64 * 1024 * 1024;

/// Hydrates from the snapshot: the manifest from the orchestrator, the zip streamed to disk and
/// hashed, extracted into a fresh directory with every guard, renamed into place. Returns the
/// project directory and the manifest's seq.
pub(crate) async fn from_snapshot(api: &Api, timings: &mut BTreeMap<String, f64>) -> anyhow::Result<(ProjectDir, i64)> {
    let config = &api.config;
    let (manifest, url) = api.manifest().await?;
    anyhow::ensure!(
        manifest.project_id == config.project,
        "the manifest is for project {}, not {}",
        manifest.project_id,
        config.project
    );
    extract::check_manifest(&manifest, &config.limits)?;
    let parent = config.dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = config.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
    std::fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
    let zip_path = parent.join(format!(".{name}.snapshot-{}.zip", config.sources.uuid().simple()));
    let hydrate_dir = parent.join(format!(".{name}.hydrate-{}", config.sources.uuid().simple()));
    let result = async {
        let step = api.now();
        let max_zip = config.limits.max_total_bytes.saturating_add(ZIP_OVERHEAD_BYTES);
        api.download_snapshot(&url, &zip_path, &manifest.zip_sha256, max_zip).await.context("download the snapshot")?;
        timings.insert("download".into(), api.ms(step));
        let step = api.now();
        let (zip, dest, manifest_copy, limits) =
            (zip_path.clone(), hydrate_dir.clone(), manifest.clone(), config.limits);
        std::fs::create_dir(&dest).with_context(|| format!("create {}", dest.display()))?;
        config
            .sources
            .run_blocking(move || extract::extract(&zip, &manifest_copy, &dest, &limits))
            .await
            .context("extract")??;
        timings.insert("extract".into(), api.ms(step));
        put_in_place(&hydrate_dir, &config.dir, &config.sources)
    }
    .await;
    let _ = std::fs::remove_file(&zip_path);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&hydrate_dir);
    }
    result?;
    let dir = ProjectDir::open(&config.dir).with_context(|| format!("open {}", config.dir.display()))?;
    Ok((dir, manifest.seq))
}

/// Renames the extracted directory to `target`, replacing an empty or earlier one.
fn put_in_place(extracted: &Path, target: &Path, sources: &Sources) -> anyhow::Result<()> {
    match std::fs::rename(extracted, target) {
        Ok(()) => Ok(()),
        Err(_) if target.exists() => {
            let old = target.with_file_name(format!(".old-{}", sources.uuid().simple()));
            std::fs::rename(target, &old).with_context(|| format!("move aside {}", target.display()))?;
            std::fs::rename(extracted, target).with_context(|| format!("move into place {}", target.display()))?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("move into place {}", target.display())),
    }
}

/// The legacy path: every current file through the API, written one by one. The base is the
/// highest seq among them: later changes replay idempotently on top.
pub(crate) async fn file_by_file(api: &Api, timings: &mut BTreeMap<String, f64>) -> anyhow::Result<(ProjectDir, i64)> {
    let config = &api.config;
    let step = api.now();
    let files = api.client.list_current_files(config.project).await.context("list the project's files")?;
    timings.insert("download".into(), api.ms(step));
    let step = api.now();
    let dir = ProjectDir::open(&config.dir).with_context(|| format!("open {}", config.dir.display()))?;
    let mut base = 0;
    for file in files {
        base = base.max(file.seq);
        let change = FileChange::Write {
            path: file.file_path,
            file_type: file.file_type,
            content: file.content,
            content_hash: file.content_hash,
            version: file.version,
        };
        let binaries = api.binaries(std::slice::from_ref(&change)).await?;
        dir.apply_with(std::slice::from_ref(&change), &binaries).with_context(|| format!("write {}", change.path()))?;
    }
    timings.insert("extract".into(), api.ms(step));
    Ok((dir, base))
}

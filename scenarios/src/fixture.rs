//! A case's `fixture SIZE seed N`: the generated project's files written into the case's
//! project by its owner, through the public API (text in bounded bulks, binaries uploaded to
//! `project-files` and recorded).

use fsync_client::Api;
use uuid::Uuid;

/// Loads fixture `size`/`seed` into `project` as `token`; a one-line summary.
pub async fn load(api: &Api, token: &str, project: Uuid, size: &str, seed: u64) -> Result<String, String> {
    let size: fsync_fixtures::Size = size.parse().map_err(|e| format!("fixture size: {e}"))?;
    let fixture = fsync_fixtures::generate(size, seed);
    let loaded = fsync_fixtures::load::files(api, token, project, &fixture).await.map_err(|e| format!("{e:#}"))?;
    Ok(format!("{} files ({} binary) at seq {}", fixture.files.len(), loaded.binaries, loaded.seq))
}

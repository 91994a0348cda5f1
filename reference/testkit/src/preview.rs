//! The previews' dev server for the tests: the shared dependencies of the fixtures' Vite app
//! (`ci/preview-deps/install`, which `ci/test` runs and names in `FSYNC_PREVIEW_DEPS`), and the
//! command that starts it in a session. A machine without them skips those tests and says why,
//! unless `FSYNC_REQUIRE_BROWSER=1` (CI sets it) makes that a failure.

use std::path::{Path, PathBuf};

/// The `--exec` command of a preview: the fixture app's Vite dev server on the host and port
/// its launcher chose (`vite` from the shared `node_modules/.bin`).
pub const DEV_SERVER: &str = r#"exec vite --host "$HOST" --port "$PORT" --strictPort --clearScreen false"#;

/// The directory whose `node_modules` previews share: `FSYNC_PREVIEW_DEPS`, else the workspace's
/// `target/preview-deps`; `None` (after saying why) when it is not installed and
/// `FSYNC_REQUIRE_BROWSER` is unset.
pub fn deps(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FSYNC_PREVIEW_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/preview-deps"));
    if dir.join("node_modules/.bin/vite").is_file() {
        return Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    let why = format!("no previews' dependencies in {} (run ci/preview-deps/install)", dir.display());
    if std::env::var_os("FSYNC_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
        panic!("{what}: FSYNC_REQUIRE_BROWSER=1, but there are {why}");
    }
    eprintln!("skipped {what}: {why}; FSYNC_REQUIRE_BROWSER=1 fails instead");
    None
}

//! The `--exec` command (the preview's dev server): started by `/bin/sh` in the project directory
//! once it is hydrated, with a fixed environment — `PATH` led by every `node_modules/.bin` from
//! the project directory up (as `npm run` does, so a `node_modules` shared from a parent directory
//! serves it), `PROJECT_DIR`, `HOME` (the session's directory) and, when it serves a preview,
//! `HOST` and `PORT`. The session runs only once that dev server answers HTTP.

use crate::config::Preview;
use anyhow::{bail, Context};
use fsync_client::transport::{self, Transport};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a dev server may take to answer its first request.
pub const READY_WITHIN: Duration = Duration::from_secs(60);
/// How often it is asked meanwhile.
const READY_EVERY: Duration = Duration::from_millis(25);
/// How long one request may take to be answered.
const ASK_WITHIN: Duration = Duration::from_secs(5);
/// The system's own programs, after the project's.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Starts `command` in `project` (killed when the returned child is dropped).
pub fn start(command: &str, project: &Path, preview: Option<&Preview>) -> anyhow::Result<Child> {
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(command)
        .current_dir(project)
        .env_clear()
        .env("PATH", search_path(project))
        .env("PROJECT_DIR", project)
        .env("HOME", project.parent().unwrap_or(project))
        .kill_on_drop(true);
    if let Some(preview) = preview {
        sh.env("HOST", &preview.host).env("PORT", preview.port.to_string());
    }
    sh.spawn().with_context(|| format!("start --exec {command:?}"))
}

/// `PATH` for a command run in `project`: each `node_modules/.bin` from it up to the root, nearest
/// first, then the system's.
fn search_path(project: &Path) -> String {
    let bins: Vec<PathBuf> =
        project.ancestors().map(|dir| dir.join("node_modules/.bin")).filter(|bin| bin.is_dir()).collect();
    let mut path: Vec<String> = bins.iter().map(|bin| bin.display().to_string()).collect();
    path.push(SYSTEM_PATH.to_owned());
    path.join(":")
}

/// Waits until the dev server `child` started answers HTTP on `preview`'s port (any status: it
/// serves); an error when it exits first or stays silent for [`READY_WITHIN`].
pub async fn until_ready(child: &mut Child, preview: &Preview) -> anyhow::Result<()> {
    let url = format!("http://{}:{}/", probe_host(&preview.host), preview.port);
    let transport = Transport::tcp();
    let answered = async {
        loop {
            let request = transport::request(http::Method::GET, &url, &[], Vec::<u8>::new())?;
            // An answer's head is enough: it serves (if the command still runs: a command that
            // failed to bind must not pass for whatever answers on that port).
            let answered = matches!(tokio::time::timeout(ASK_WITHIN, transport.send(request)).await, Ok(Ok(_)));
            if let Some(status) = child.try_wait().context("look at the --exec command")? {
                bail!("the --exec command exited ({status}) before its dev server answered on {url}");
            }
            if answered {
                return Ok(());
            }
            tokio::time::sleep(READY_EVERY).await;
        }
    };
    match tokio::time::timeout(READY_WITHIN, answered).await {
        Ok(outcome) => outcome,
        Err(_) => bail!("the --exec command's dev server did not answer on {url} within {READY_WITHIN:?}"),
    }
}

/// Where to ask a server bound to `host`: a wildcard address is reached on loopback.
fn probe_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "[::1]",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_leads_with_every_node_modules_bin_from_the_project_up() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("session/project");
        for bin in ["session/node_modules/.bin", "session/project/node_modules/.bin"] {
            std::fs::create_dir_all(root.path().join(bin)).unwrap();
        }
        let path = search_path(&project);
        let expected = format!(
            "{}:{}:{SYSTEM_PATH}",
            project.join("node_modules/.bin").display(),
            root.path().join("session/node_modules/.bin").display()
        );
        assert_eq!(path, expected);
    }

    #[test]
    fn a_wildcard_bind_is_asked_on_loopback() {
        assert_eq!(probe_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(probe_host("127.0.0.1"), "127.0.0.1");
    }
}

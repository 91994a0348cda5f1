//! Edit RPC sent → applied on an agent's disk: agents following one project while editors write
//! at a fixed rate (open loop: each edit is sent on its schedule, whatever the answers). Every
//! edit creates its own file `live/e-N.ts` holding `edit N`; inotify reports each agent's
//! rename into place, the file is read back and its content checked, and the sample is the time
//! from the edit's send to that moment. Edits never seen within the grace period count as not
//! applied.

use crate::clock::{self, now};
use crate::measure::pace;
use anyhow::Context;
use fsync_client::Api;
use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

/// The directory every edit lands in (it exists in the project before the agents start).
pub const LIVE_DIR: &str = "live";
/// Edits in flight at most (a slower server makes the editors fall behind, which shows).
const IN_FLIGHT: usize = 256;
/// How long stragglers may still arrive after the last edit.
const GRACE: Duration = Duration::from_secs(10);

/// What a delta run measured.
#[derive(Debug, Default)]
pub struct Deltas {
    pub samples_ms: Vec<f64>,
    /// Edit sent → its RPC's answer (the write committed), for each edit that succeeded: the
    /// first part of every sample.
    pub acked_ms: Vec<f64>,
    pub edits: usize,
    pub agents: usize,
    /// Samples whose file held other content than the edit's.
    pub wrong_content: usize,
    pub failed_edits: usize,
}

impl Deltas {
    /// The fraction of (edit, agent) pairs seen applied with the right content.
    pub fn applied(&self) -> f64 {
        let expected = (self.edits * self.agents) as f64;
        if expected == 0.0 {
            0.0
        } else {
            self.samples_ms.len() as f64 / expected
        }
    }
}

/// Sends `rate` edits per second for `duration` to `project` and times their arrival in every
/// directory of `dirs` (the agents' project directories).
pub async fn run(
    api: &Api,
    token: &str,
    project: Uuid,
    dirs: &[PathBuf],
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Deltas> {
    let edits = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; edits]));
    // The watcher reads events as they come (an arrival is timed when it is read), on a thread
    // of its own so that reading files back never holds up the server or the editors.
    let watching = Watcher::start(dirs)?.spawn(edits * dirs.len(), GRACE)?;
    let (failed, acked_ms) = send_edits(api, token, project, rate, edits, sent.clone()).await;
    let seen = watching.await.context("the watcher's thread ended without its arrivals")?;
    let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
    let mut deltas = Deltas { edits, agents: dirs.len(), failed_edits: failed, acked_ms, ..Deltas::default() };
    for arrival in seen {
        match (arrival.content_ok, sent.get(arrival.edit).copied().flatten()) {
            (true, Some(at)) => deltas.samples_ms.push(arrival.at.saturating_duration_since(at).as_secs_f64() * 1e3),
            _ => deltas.wrong_content += 1,
        }
    }
    Ok(deltas)
}

/// The edits on their schedule: how many failed, and how long each successful one took to be
/// answered.
async fn send_edits(
    api: &Api,
    token: &str,
    project: Uuid,
    rate: u32,
    edits: usize,
    sent: Arc<Mutex<Vec<Option<Instant>>>>,
) -> (usize, Vec<f64>) {
    let answers: Arc<Mutex<(usize, Vec<f64>)>> = Arc::default();
    pace::open_loop(rate, edits, IN_FLIGHT, |n| {
        let (api, token, sent, answers) = (api.clone(), token.to_owned(), sent.clone(), answers.clone());
        async move {
            let args = json!({"project_uuid": project, "p_file_path": format!("{LIVE_DIR}/e-{n}.ts"), "p_content": content(n), "p_file_type": "typescript"});
            let at = now();
            sent.lock().unwrap_or_else(|e| e.into_inner())[n] = Some(at);
            let ok = matches!(api.rpc(Some(&token), "upsert_project_file", args).await, Ok(reply) if reply.is_success());
            let mut answers = answers.lock().unwrap_or_else(|e| e.into_inner());
            match ok {
                true => answers.1.push(clock::ms_since(at)),
                false => answers.0 += 1,
            }
        }
    })
    .await;
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    answers
}

fn content(n: usize) -> String {
    format!("export const edit = {n};\n")
}

/// One file seen in place.
struct Arrival {
    edit: usize,
    at: Instant,
    content_ok: bool,
}

/// inotify on every agent's `live/` directory.
struct Watcher {
    inotify: Inotify,
    /// Each watched `live/` directory and its watch.
    dirs: Vec<(inotify::WatchDescriptor, PathBuf)>,
}

impl Watcher {
    fn start(dirs: &[PathBuf]) -> anyhow::Result<Watcher> {
        let inotify = Inotify::init().context("start inotify")?;
        let mut watched = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let live = dir.join(LIVE_DIR);
            let wd = inotify
                .watches()
                .add(&live, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)
                .with_context(|| format!("watch {}", live.display()))?;
            watched.push((wd, live));
        }
        Ok(Watcher { inotify, dirs: watched })
    }

    /// Collects on a thread of its own (with its own one-thread runtime); the arrivals come
    /// through the receiver.
    fn spawn(self, expected: usize, grace: Duration) -> anyhow::Result<oneshot::Receiver<Vec<Arrival>>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("a runtime")?;
        let (send, arrivals) = oneshot::channel();
        std::thread::Builder::new()
            .name("delta-watcher".into())
            .spawn(move || {
                let _ = send.send(runtime.block_on(self.collect(expected, grace)));
            })
            .context("start the watcher's thread")?;
        Ok(arrivals)
    }

    /// Arrivals until `expected` came or `grace` passed without a new one.
    async fn collect(self, expected: usize, grace: Duration) -> Vec<Arrival> {
        let mut stream = match self.inotify.into_event_stream(vec![0u8; 64 * 1024]) {
            Ok(stream) => stream,
            Err(_) => return Vec::new(),
        };
        let mut arrivals = Vec::with_capacity(expected);
        let mut seen = std::collections::BTreeSet::new();
        while arrivals.len() < expected {
            let Ok(Some(Ok(event))) = tokio::time::timeout(grace, stream.next()).await else { break };
            let at = clock::now();
            let Some(agent) = self.dirs.iter().position(|(wd, _)| *wd == event.wd) else { continue };
            let Some(name) = event.name else { continue };
            let Some(edit) = edit_of(&name.to_string_lossy()) else { continue };
            if !seen.insert((agent, edit)) {
                continue;
            }
            arrivals.push(Arrival { edit, at, content_ok: holds(&self.dirs[agent].1.join(&name), edit) });
        }
        arrivals
    }
}

fn edit_of(name: &str) -> Option<usize> {
    name.strip_prefix("e-")?.strip_suffix(".ts")?.parse().ok()
}

fn holds(path: &Path, edit: usize) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text == content(edit))
}

//! How much a run measures: `--quick` (well under two minutes, for every rollout step and the
//! README's first command) or the full run (a few minutes, more samples and longer loads).

use fsync_fixtures::Size;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Sessions started on the small project (new path), and on the legacy path.
    pub small_sessions: usize,
    pub legacy_small_sessions: usize,
    /// The large project, and its sessions: snapshot built (warm), built on demand (cold), legacy.
    pub large: Size,
    pub large_warm: usize,
    pub large_cold: usize,
    pub legacy_large: usize,
    /// Agents following one project while editors write `edit_rate` edits/s for `edit_for`.
    pub agents: usize,
    pub edit_rate: u32,
    pub edit_for: Duration,
    /// Upsert rates stepped through, each for `step_for`, over `projects` projects.
    pub rates: Vec<u32>,
    pub step_for: Duration,
    pub projects: usize,
    pub fanout_sockets: usize,
    pub fanout_rounds: usize,
    /// Samples of the notify floor and of commit → delivered.
    pub samples: usize,
}

impl Plan {
    pub fn quick() -> Plan {
        Plan {
            quick: true,
            small_sessions: 20,
            legacy_small_sessions: 5,
            large: Size::Large,
            large_warm: 2,
            large_cold: 1,
            legacy_large: 1,
            agents: 100,
            edit_rate: 200,
            edit_for: Duration::from_secs(5),
            rates: vec![500, 1_000, 2_000, 4_000],
            step_for: Duration::from_secs(2),
            projects: 16,
            fanout_sockets: 1_000,
            fanout_rounds: 10,
            samples: 100,
        }
    }

    pub fn full() -> Plan {
        Plan {
            quick: false,
            small_sessions: 50,
            legacy_small_sessions: 20,
            large_warm: 5,
            large_cold: 3,
            legacy_large: 2,
            edit_for: Duration::from_secs(30),
            rates: vec![250, 500, 1_000, 2_000, 3_000, 4_000, 6_000],
            step_for: Duration::from_secs(5),
            fanout_rounds: 20,
            samples: 300,
            ..Plan::quick()
        }
    }

    /// The parameters as the report records them.
    pub fn parameters(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("small_sessions".into(), json!(self.small_sessions)),
            ("legacy_small_sessions".into(), json!(self.legacy_small_sessions)),
            ("large_fixture".into(), json!(self.large.as_str())),
            ("large_warm_sessions".into(), json!(self.large_warm)),
            ("large_cold_sessions".into(), json!(self.large_cold)),
            ("legacy_large_sessions".into(), json!(self.legacy_large)),
            ("agents".into(), json!(self.agents)),
            ("edits_per_s".into(), json!(self.edit_rate)),
            ("edit_seconds".into(), json!(self.edit_for.as_secs())),
            ("upsert_rates_per_s".into(), json!(self.rates)),
            ("upsert_step_seconds".into(), json!(self.step_for.as_secs())),
            ("upsert_projects".into(), json!(self.projects)),
            ("fanout_sockets".into(), json!(self.fanout_sockets)),
            ("fanout_rounds".into(), json!(self.fanout_rounds)),
            ("floor_samples".into(), json!(self.samples)),
        ])
    }
}

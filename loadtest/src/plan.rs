//! How much a run measures: `--quick` (well under two minutes, for every rollout step and the
//! README's first command) or the full run (a few minutes, more samples and longer loads).

use fsync_fixtures::Size;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A part of a local run that can be measured on its own (`kpi --phases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Edits to a fleet of agents (it runs first: see [`Plan::phases`]).
    Delta,
    /// Session starts (small, large warm and cold, legacy) and the `unzip` and copy floors.
    Starts,
    /// Commit → delivered beside the `LISTEN` floor, and the fan-out.
    Delivery,
    /// Stepped upserts and their knee.
    Upserts,
    /// Sessions stopped through the other instance: → channel closed, → agent gone.
    Stops,
}

impl Phase {
    pub const ALL: [Phase; 5] = [Phase::Delta, Phase::Starts, Phase::Delivery, Phase::Upserts, Phase::Stops];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Delta => "delta",
            Phase::Starts => "starts",
            Phase::Delivery => "delivery",
            Phase::Upserts => "upserts",
            Phase::Stops => "stops",
        }
    }

    /// Parses a phase's name (as `--phases` takes it).
    pub fn parse(name: &str) -> Result<Phase, String> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown phase {name:?} (phases: {})", names.join(", "))
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// What is measured, in this order (a report without a phase's figures fails the gate as
    /// "not measured"). Edits go first, before the session starts have created and deleted
    /// tens of thousands of files on the machine's disk (see `measure::delta`).
    pub phases: BTreeSet<Phase>,
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
    /// Sessions stopped through the other instance than runs them.
    pub stops: usize,
    /// `--launcher docker`: the preview image whose containers also start sessions (small and
    /// large warm, as many as the process starts), beside a container that exits at once.
    pub container_image: Option<String>,
}

impl Plan {
    pub fn quick() -> Plan {
        Plan {
            quick: true,
            phases: Phase::ALL.into_iter().collect(),
            small_sessions: 20,
            legacy_small_sessions: 5,
            large: Size::Large,
            large_warm: 2,
            large_cold: 1,
            legacy_large: 1,
            agents: 100,
            edit_rate: 200,
            edit_for: Duration::from_secs(5),
            rates: vec![500, 750, 1_000, 1_500, 3_000],
            step_for: Duration::from_secs(2),
            projects: 16,
            fanout_sockets: 1_000,
            fanout_rounds: 10,
            samples: 100,
            stops: 50,
            container_image: None,
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
            rates: vec![250, 500, 750, 1_000, 1_250, 1_500, 2_000, 3_000, 4_000, 6_000],
            step_for: Duration::from_secs(5),
            fanout_rounds: 20,
            samples: 300,
            ..Plan::quick()
        }
    }

    /// The parameters as the report records them.
    pub fn parameters(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("phases".into(), json!(self.phases.iter().map(|p| p.as_str()).collect::<Vec<_>>())),
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
            ("stops".into(), json!(self.stops)),
            ("container_image".into(), json!(self.container_image)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_parse_by_name_and_an_unknown_one_lists_them() {
        for phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Ok(phase));
        }
        let err = Phase::parse("floors").unwrap_err();
        assert!(err.contains("\"floors\"") && err.contains("delta, starts, delivery, upserts, stops"), "{err}");
    }

    #[test]
    fn edits_run_before_anything_deletes_files() {
        let plan = Plan::quick();
        assert_eq!(plan.phases.iter().next(), Some(&Phase::Delta));
        assert_eq!(plan.phases.len(), Phase::ALL.len(), "every phase by default");
        assert_eq!(plan.parameters()["phases"], json!(["delta", "starts", "delivery", "upserts", "stops"]));
    }
}

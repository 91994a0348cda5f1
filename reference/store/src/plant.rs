//! Known bugs behind a switch that exists only for the harness (DESIGN §12, `fsync-sim --plant`):
//! each one undoes a part of the design, so the simulator can show that its checkers notice.
//! Nothing outside the simulator and its tests turns one on.

use std::fmt;
use std::str::FromStr;

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Plant {
    /// The sequencer applies an event across a gap instead of catching up.
    SkipGapCheck,
    /// The sequencer applies events at or below `last_seq` (duplicates and late ones).
    ApplyStale,
    /// The model sends an event for a write that then fails.
    BroadcastBeforeCommit,
    /// The agent does not catch up from the snapshot's seq after hydrating.
    SkipBaseCatchUp,
    /// A server that lost its broadcast feed keeps its sockets instead of making them resync.
    NoResyncAfterListenLoss,
}

impl Plant {
    pub const ALL: [Plant; 5] = [
        Plant::SkipGapCheck,
        Plant::ApplyStale,
        Plant::BroadcastBeforeCommit,
        Plant::SkipBaseCatchUp,
        Plant::NoResyncAfterListenLoss,
    ];

    /// The name `--plant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Plant::SkipGapCheck => "skip-gap-check",
            Plant::ApplyStale => "apply-stale",
            Plant::BroadcastBeforeCommit => "broadcast-before-commit",
            Plant::SkipBaseCatchUp => "skip-base-catch-up",
            Plant::NoResyncAfterListenLoss => "no-resync-after-listen-loss",
        }
    }
}

impl fmt::Display for Plant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Plant {
    type Err = String;

    fn from_str(name: &str) -> Result<Plant, String> {
        Plant::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Plant::ALL.iter().map(|p| p.name()).collect();
            format!("no planted bug {name:?}; there are {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plant_parses_from_its_name() {
        for plant in Plant::ALL {
            assert_eq!(plant.name().parse::<Plant>(), Ok(plant));
        }
        assert!("skip-everything".parse::<Plant>().unwrap_err().contains("skip-gap-check"));
    }
}

//! The budgets a report is held to (`ci/kpi-budgets.toml`): the plan's `gate` (a missed one
//! fails the rollout) and our `target`s (DESIGN §11, reported as met or missed). A bound is an
//! absolute `max` or `min` in the figure's unit, or `max_ratio` to another figure of the same
//! run (`of`, a floor).

use crate::table::Bound;
use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default)]
    pub gate: BTreeMap<String, Limit>,
    #[serde(default)]
    pub target: BTreeMap<String, Limit>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub max_ratio: Option<f64>,
    /// The figure `max_ratio` is relative to.
    pub of: Option<String>,
}

/// One figure held to one limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kpi: String,
    pub kind: &'static str,
    pub text: String,
    /// The threshold in the figure's unit (a ratio's is `max_ratio × the floor`).
    pub threshold: Option<f64>,
    /// `None`: the figure (or its floor) was not measured.
    pub met: Option<bool>,
}

impl Budgets {
    pub fn read(path: &Path) -> anyhow::Result<Budgets> {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let budgets: Budgets = toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        for (name, limit) in budgets.gate.iter().chain(&budgets.target) {
            limit.check().with_context(|| format!("{}: {name}", path.display()))?;
        }
        Ok(budgets)
    }

    /// Every limit applied to the figures `kpis` (a report's, or read live), gates first.
    pub fn judge(&self, kpis: &BTreeMap<String, f64>) -> Vec<Verdict> {
        let gates = self.gate.iter().map(|(kpi, limit)| limit.judge(kpi, "gate", kpis));
        let targets = self.target.iter().map(|(kpi, limit)| limit.judge(kpi, "target", kpis));
        gates.chain(targets).collect()
    }
}

impl Limit {
    fn check(&self) -> anyhow::Result<()> {
        let bounds = [self.max.is_some(), self.min.is_some(), self.max_ratio.is_some()].iter().filter(|b| **b).count();
        anyhow::ensure!(bounds == 1, "give exactly one of max, min, max_ratio");
        anyhow::ensure!(self.max_ratio.is_some() == self.of.is_some(), "max_ratio needs `of` (and only it)");
        Ok(())
    }

    fn judge(&self, kpi: &str, kind: &'static str, kpis: &BTreeMap<String, f64>) -> Verdict {
        let value = kpis.get(kpi).copied();
        let (text, threshold, met) = match (self.max, self.min, self.max_ratio, &self.of) {
            (Some(max), _, _, _) => (format!("≤ {max}"), Some(max), value.map(|v| v <= max)),
            (_, Some(min), _, _) => (format!("≥ {min}"), Some(min), value.map(|v| v >= min)),
            (_, _, Some(ratio), Some(of)) => {
                let floor = kpis.get(of).copied();
                let threshold = floor.map(|f| f * ratio);
                (format!("≤ {ratio}× {of}"), threshold, value.zip(threshold).map(|(v, t)| v <= t))
            }
            _ => ("(invalid limit)".into(), None, None),
        };
        Verdict { kpi: kpi.to_owned(), kind, text, threshold, met }
    }
}

/// The verdicts as the report renderers take them.
pub fn bounds(verdicts: &[Verdict]) -> Vec<Bound> {
    verdicts
        .iter()
        .map(|v| Bound { kpi: v.kpi.clone(), kind: v.kind, text: v.text.clone(), value: v.threshold, met: v.met })
        .collect()
}

/// Whether the rollout may go on: every gate measured and met.
pub fn gate_passes(verdicts: &[Verdict]) -> bool {
    verdicts.iter().filter(|v| v.kind == "gate").all(|v| v.met == Some(true))
}

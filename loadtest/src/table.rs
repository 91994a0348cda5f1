//! The figures of a KPI run as rows — name, value, the floor measured beside it and the ratio,
//! the gate's and the target's bounds with met or missed — and those rows as a plain-text table
//! for the terminal. The HTML report (`html`) draws the same rows, so the two never disagree.
//!
//! A [`Bound`] is deliberately plain (text, threshold, verdict) so that whatever decides budgets
//! hands its verdicts to both renderers without either knowing how budgets are written.

use crate::report::Report;
use std::collections::BTreeMap;

/// One budget or target applied to one figure, already judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The figure it applies to (`delta_p50_ms`).
    pub kpi: String,
    /// [`Bound::GATE`] (the plan's budget: a miss fails the rollout) or [`Bound::TARGET`] (ours).
    pub kind: &'static str,
    /// The bound as a reader reads it: `< 15000 ms`, `≤ 2× floor_notify_p50_ms`.
    pub text: String,
    /// The threshold in the figure's unit (for `≤ 2× floor_notify_p50_ms`, twice that floor);
    /// the plots draw it as a dashed line. `None` when it cannot be placed.
    pub value: Option<f64>,
    /// Whether the run met it; `None` when it could not be judged (the figure was not measured).
    pub met: Option<bool>,
}

impl Bound {
    pub const GATE: &'static str = "gate";
    pub const TARGET: &'static str = "target";

    /// `met`, `missed`, or `not judged`.
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not judged",
        }
    }
}

/// One figure's row, as both renderers show it.
#[derive(Debug, Clone)]
pub(crate) struct Row<'a> {
    pub kpi: &'a str,
    /// `None` for a figure a bound names but the run did not measure.
    pub value: Option<f64>,
    /// The floor's name and, when measured, its value.
    pub floor: Option<(&'a str, Option<f64>)>,
    /// value ÷ floor.
    pub ratio: Option<f64>,
    pub gates: Vec<&'a Bound>,
    pub targets: Vec<&'a Bound>,
}

/// Figures in the order DESIGN §12 lists them; unknown ones join their group (by prefix) after
/// the known ones, alphabetically.
const KNOWN: &[&str] = &[
    "start_small_p50_ms",
    "start_legacy_small_p50_ms",
    "start_large_warm_p50_ms",
    "start_large_cold_p50_ms",
    "start_small_container_p50_ms",
    "start_large_container_p50_ms",
    "extract_large_ms",
    "unzip_large_ms",
    "delta_p50_ms",
    "delta_p99_ms",
    "floor_notify_p50_ms",
    "delivered_p50_ms",
    "fanout_1000_p50_ms",
    "upserts_per_s",
    "agent_hydrate_rss_mib",
    "stop_channel_closed_p50_ms",
    "stop_agent_gone_p50_ms",
];
const GROUPS: &[&str] =
    &["start_", "extract_", "unzip_", "delta_", "floor_", "delivered_", "fanout_", "upserts_", "agent_", "stop_"];

/// Every figure of `report`, and every figure a bound names even if the run did not measure it
/// (a gate on a missing figure must show).
pub(crate) fn rows<'a>(
    kpis: &'a BTreeMap<String, f64>,
    floors: &'a BTreeMap<String, String>,
    bounds: &'a [Bound],
) -> Vec<Row<'a>> {
    let mut names: Vec<&str> = kpis.keys().map(String::as_str).collect();
    for bound in bounds {
        if !names.contains(&bound.kpi.as_str()) {
            names.push(&bound.kpi);
        }
    }
    names.sort_by_key(|name| {
        let group = GROUPS.iter().position(|g| name.starts_with(g)).unwrap_or(GROUPS.len());
        let known = KNOWN.iter().position(|k| k == name).unwrap_or(KNOWN.len());
        (group, known, *name)
    });
    names
        .into_iter()
        .map(|kpi| {
            let value = kpis.get(kpi).copied();
            let floor = floors.get(kpi).map(|f| (f.as_str(), kpis.get(f).copied()));
            let ratio = match (value, floor) {
                (Some(v), Some((_, Some(f)))) if f > 0.0 => Some(v / f),
                _ => None,
            };
            let of_kind = |kind: &str| bounds.iter().filter(|b| b.kpi == kpi && b.kind == kind).collect();
            Row { kpi, value, floor, ratio, gates: of_kind(Bound::GATE), targets: of_kind(Bound::TARGET) }
        })
        .collect()
}

/// The unit a figure's name ends with, as a reader writes it.
pub(crate) fn unit(kpi: &str) -> &'static str {
    const SUFFIXES: &[(&str, &str)] = &[
        ("_per_s", "/s"),
        ("_ms", "ms"),
        ("_mib", "MiB"),
        ("_bytes", "B"),
        ("_pct", "%"),
        ("_ratio", "×"),
        ("_s", "s"),
    ];
    SUFFIXES.iter().find(|(suffix, _)| kpi.ends_with(suffix)).map_or("", |(_, unit)| unit)
}

/// A number with as many digits as a reader needs: `12,345`, `123`, `12.3`, `1.23`, `0.0123`.
pub(crate) fn number(v: f64) -> String {
    let magnitude = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if magnitude >= 999.5 {
        let digits = format!("{:.0}", magnitude);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if magnitude >= 99.5 || magnitude == 0.0 {
        format!("{v:.0}")
    } else if magnitude >= 9.995 {
        format!("{v:.1}")
    } else if magnitude >= 0.9995 {
        format!("{v:.2}")
    } else {
        // Three significant digits.
        let decimals = (2 - magnitude.log10().floor() as i32).clamp(0, 9) as usize;
        format!("{v:.decimals$}")
    }
}

/// The bound as a reader reads it, with the figure's unit when its text ends in a bare number
/// (`≤ 15000` → `≤ 15000 ms`).
pub(crate) fn bound_text(bound: &Bound) -> String {
    let bare = bound.text.chars().last().is_some_and(|c| c.is_ascii_digit());
    if bare {
        join_unit(&bound.text, unit(&bound.kpi))
    } else {
        bound.text.clone()
    }
}

/// `12.3 ms`, `3,120/s`.
pub(crate) fn with_unit(kpi: &str, v: f64) -> String {
    join_unit(&number(v), unit(kpi))
}

/// `12 ms` but `3,120/s` and `50%`.
fn join_unit(number: &str, unit: &str) -> String {
    match unit {
        "" => number.to_owned(),
        u if u.starts_with('/') || u == "%" || u == "×" => format!("{number}{u}"),
        u => format!("{number} {u}"),
    }
}

/// `1.73×`.
pub(crate) fn ratio(r: f64) -> String {
    format!("{}×", number(r))
}

/// What a known figure measures, for a reader who does not know the names.
pub(crate) fn describe(kpi: &str) -> Option<&'static str> {
    Some(match kpi {
        "start_small_p50_ms" => "session request → agent running, small project, median",
        "start_legacy_small_p50_ms" => "the same on the plan's old path (file by file), small project, median",
        "start_large_warm_p50_ms" => "large project, snapshot already built, median",
        "start_large_cold_p50_ms" => "large project, snapshot built on demand, median",
        "start_small_container_p50_ms" => {
            "session request → agent running in a Docker container, small project, median"
        }
        "start_large_container_p50_ms" => "the same, large project, snapshot already built, median",
        "floor_container_ms" => "a container of the preview image that exits at once, created → exited, median",
        "extract_large_ms" => "the agent extracting the large snapshot",
        "unzip_large_ms" => "unzip of the same zip",
        "delta_p50_ms" => "edit RPC sent → applied on an agent's disk, median",
        "delta_p99_ms" => "edit RPC sent → applied on an agent's disk, 99th percentile",
        "floor_notify_p50_ms" => "PostgreSQL commit → LISTEN notification, median",
        "delivered_p50_ms" => "commit → delivered on a WebSocket, median",
        "fanout_1000_p50_ms" => "one event to 1,000 sockets, median",
        "upserts_per_s" => "sustained upserts, one server instance",
        "agent_hydrate_rss_mib" => "agent peak RSS while hydrating the large project",
        "stop_channel_closed_p50_ms" => "session stopped through another instance → its channel closed, median",
        "stop_agent_gone_p50_ms" => "session stopped through another instance → its agent gone, median",
        _ => return None,
    })
}

/// The figures as an aligned plain-text table, one line per figure under a header line and a
/// rule: figure, value, floor, ratio, gate and target (each with `met` or `missed`).
pub fn terminal(report: &Report, bounds: &[Bound]) -> String {
    figures_table(&report.kpis, &report.floors, bounds)
}

/// The table of `kpis` (each beside its floor in `floors`) and `bounds`, as [`terminal`].
pub fn figures_table(kpis: &BTreeMap<String, f64>, floors: &BTreeMap<String, String>, bounds: &[Bound]) -> String {
    let header = ["figure", "value", "floor", "ratio", "gate", "target"].map(String::from);
    let judged =
        |bs: &[&Bound]| bs.iter().map(|b| format!("{} {}", bound_text(b), b.verdict())).collect::<Vec<_>>().join("; ");
    let mut lines: Vec<[String; 6]> = vec![header];
    for row in rows(kpis, floors, bounds) {
        let floor = match row.floor {
            Some((name, Some(v))) => with_unit(name, v),
            Some((_, None)) => "not measured".into(),
            None => String::new(),
        };
        lines.push([
            row.kpi.to_owned(),
            row.value.map_or_else(|| "not measured".into(), |v| with_unit(row.kpi, v)),
            floor,
            row.ratio.map(ratio).unwrap_or_default(),
            judged(&row.gates),
            judged(&row.targets),
        ]);
    }
    let mut widths = [0; 6];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers align right, words left.
    let right = [false, true, true, true, false, false];
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .zip(right)
            .map(|((cell, width), right)| {
                let pad = " ".repeat(width - cell.chars().count());
                if right && n > 0 {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_the_digits_a_reader_needs() {
        assert_eq!(number(12345.4), "12,345");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.01234), "0.0123");
        assert_eq!(number(0.0), "0");
        assert_eq!(with_unit("delta_p50_ms", 1.5), "1.50 ms");
        assert_eq!(with_unit("upserts_per_s", 3120.0), "3,120/s");
        assert_eq!(with_unit("agent_hydrate_rss_mib", 14.2), "14.2 MiB");
        let bound = |kpi: &str, text: &str| Bound {
            kpi: kpi.into(),
            kind: Bound::GATE,
            text: text.into(),
            value: None,
            met: None,
        };
        assert_eq!(bound_text(&bound("start_small_p50_ms", "≤ 15000")), "≤ 15000 ms");
        assert_eq!(bound_text(&bound("delivered_p50_ms", "≤ 2× floor_notify_p50_ms")), "≤ 2× floor_notify_p50_ms");
        assert_eq!(bound_text(&bound("delta_applied_fraction", "≥ 1")), "≥ 1");
        assert_eq!(bound_text(&bound("upserts_per_s", "≥ 3000")), "≥ 3000/s");
    }
}

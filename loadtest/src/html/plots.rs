//! The report's plots, one function per kind: latency CDFs with the bounds that apply drawn as
//! dashed lines ([`cdf`]), throughput against latency with its knee marked ([`throughput`]), and
//! the session start broken into phases as stacked bars ([`phases`]). Each returns a finished
//! `<svg class="plot">`, or a "not measured" box when it has nothing to draw.

use super::escape;
use super::svg::{Plot, Scale, Swatch, GATE_COLOUR, PALETTE};
use crate::report::ThroughputStep;
use crate::stats::percentile;
use crate::table::{bound_text, number, unit, with_unit, Bound};
use std::collections::BTreeMap;

/// A CDF drawn with more samples than this is drawn through this many quantiles instead.
const CDF_POINTS: usize = 400;
/// Achieved below this share of offered means the server stopped keeping up.
const KNEE_ACHIEVED_SHARE: f64 = 0.9;
/// p99 growing more than this from one step to the next means queues started to build.
const KNEE_P99_JUMP: f64 = 3.0;
/// Phases stacked in the order a session goes through them; others follow alphabetically.
const PHASE_ORDER: &[&str] = &["snapshot", "spawn", "join", "download", "extract", "catch_up", "exec"];
/// Timings that span other phases (or name one twice) and so are not stacked: `total` is drawn
/// as a mark, the others are listed in the bar's tooltip.
const SPANS: &[&str] = &["total", "hydrate", "snapshot_built", "snapshot_reused"];
/// Session kinds in the order DESIGN §11 lists them; others follow alphabetically.
pub const KIND_ORDER: &[&str] =
    &["small", "legacy_small", "large_warm", "large_cold", "legacy_large", "small_container", "large_container"];
const BAR_HEIGHT: f64 = 24.0;
const BAR_GAP: f64 = 16.0;
/// The part of a start's total that no phase covers.
const OTHER_COLOUR: &str = "#d9d9d9";
const DASH_GATE: &str = "7 4";
const DASH_TARGET: &str = "3 3";

/// One line of a CDF.
pub struct Line<'a> {
    pub name: String,
    pub samples: &'a [f64],
    pub colour: &'static str,
    /// Bounds on figures whose names start with this belong to this line (`delta_`).
    pub kpi_prefix: String,
}

/// A box that stands where a plot would, saying why there is none.
pub fn not_measured(title: &str, why: &str) -> String {
    format!(
        r#"<div class="plot-missing"><div class="title">{}</div><p><b>not measured</b>{}</p></div>"#,
        escape(title),
        if why.is_empty() { String::new() } else { format!(": {}", escape(why)) }
    )
}

/// Cumulative distributions of `lines` (x: ms, y: 0–100 %) with every bound in `bounds` that
/// belongs to one of them drawn at its threshold.
pub fn cdf(title: &str, x_name: &str, lines: &[Line], bounds: &[Bound]) -> String {
    if lines.iter().all(|l| finite_sorted(l.samples).is_empty()) {
        return not_measured(title, "no samples");
    }
    let rules: Vec<(&Bound, f64, &str)> = bounds
        .iter()
        .filter(|b| unit(&b.kpi) == "ms")
        .filter_map(|b| {
            let line = lines.iter().find(|l| b.kpi.starts_with(&l.kpi_prefix))?;
            let colour = if b.kind == Bound::GATE { GATE_COLOUR } else { line.colour };
            Some((b, b.value.filter(|v| v.is_finite())?, colour))
        })
        .collect();
    let xs = lines.iter().flat_map(|l| l.samples.iter().copied()).chain(rules.iter().map(|r| r.1));
    let mut plot = Plot::new(title, Scale::fit(xs), Scale::stepped(0.0, 100.0, 25.0));
    plot.axes(x_name, "share of samples", |v| format!("{v:.0} %"));
    // p99 is where a tail shows; a faint line there makes it readable.
    let (right, y99) = (plot.right(), plot.y.px(99.0));
    plot.line(plot.left(), y99, right, y99, "grid", Some(("#999", "2 3")));
    plot.text(right + 3.0, y99 + 4.0, "start", "tick", "p99");

    for line in lines {
        let sorted = finite_sorted(line.samples);
        if sorted.is_empty() {
            plot.legend(Swatch::None, format!("{}: not measured", line.name));
            continue;
        }
        plot.polyline(&cdf_points(&sorted, plot.x.lo), line.colour);
        let p = |q| percentile(&sorted, q).map_or_else(String::new, |v| with_unit("_ms", v));
        plot.legend(
            Swatch::Line { colour: line.colour.into(), dash: None },
            format!(
                "{}: {} sample{}, p50 {}, p99 {}",
                line.name,
                sorted.len(),
                if sorted.len() == 1 { "" } else { "s" },
                p(50.0),
                p(99.0)
            ),
        );
    }
    for (row, (bound, value, colour)) in rules.iter().enumerate() {
        let dash = if bound.kind == Bound::GATE { DASH_GATE } else { DASH_TARGET };
        let label = format!("{} {}", bound.kind, bound_text(bound));
        // Labelled at the bottom: right of a threshold, a rising CDF leaves the bottom empty.
        plot.vertical_rule(*value, (colour, dash), &label, row % 4, true);
        // A bound on a percentile is met when the curve crosses that share left of the mark.
        if let Some(share) = percentile_of(&bound.kpi) {
            plot.diamond(*value, share, colour);
        }
        plot.legend(
            Swatch::Line { colour: (*colour).into(), dash: Some(dash) },
            format!("{} {} {}: {}", bound.kind, bound.kpi, bound_text(bound), bound.verdict()),
        );
    }
    plot.finish()
}

fn finite_sorted(samples: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The CDF's outline in (value, %): exact steps for few samples, quantiles for many. Samples
/// that are all equal make a vertical step, so it starts at `axis_start` at 0 % (a CDF is 0
/// below its first sample) and has a width.
fn cdf_points(sorted: &[f64], axis_start: f64) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let first = if sorted[0] == sorted[n - 1] { axis_start.min(sorted[0]) } else { sorted[0] };
    let mut points = vec![(first, 0.0)];
    if n <= CDF_POINTS {
        for (i, v) in sorted.iter().enumerate() {
            points.push((*v, 100.0 * i as f64 / n as f64));
            points.push((*v, 100.0 * (i + 1) as f64 / n as f64));
        }
    } else {
        for k in 1..=CDF_POINTS {
            let share = k as f64 / CDF_POINTS as f64;
            let rank = ((share * n as f64).ceil() as usize).clamp(1, n);
            points.push((sorted[rank - 1], 100.0 * share));
        }
    }
    points
}

/// `delta_p99_ms` → 99.
fn percentile_of(kpi: &str) -> Option<f64> {
    kpi.split('_').find_map(|part| part.strip_prefix('p')?.parse::<f64>().ok()).filter(|p| *p > 0.0 && *p <= 100.0)
}

/// Why a step is the knee.
#[derive(Debug, Clone, PartialEq)]
pub enum KneeCause {
    /// Achieved fell below [`KNEE_ACHIEVED_SHARE`] of offered.
    Achieved { share: f64 },
    /// p99 grew more than [`KNEE_P99_JUMP`] times over the step before.
    P99Jump { factor: f64 },
}

/// The first step at which the server stopped following the offered rate: achieved below 90 %
/// of offered, or p99 more than 3× the step before's.
pub fn knee(steps: &[ThroughputStep]) -> Option<(usize, KneeCause)> {
    steps.iter().enumerate().find_map(|(i, step)| {
        let share = step.achieved_per_s / step.offered_per_s;
        if step.offered_per_s > 0.0 && share < KNEE_ACHIEVED_SHARE {
            return Some((i, KneeCause::Achieved { share }));
        }
        let before = steps.get(i.checked_sub(1)?)?;
        let factor = step.p99_ms / before.p99_ms;
        (before.p99_ms > 0.0 && factor > KNEE_P99_JUMP).then_some((i, KneeCause::P99Jump { factor }))
    })
}

/// Achieved upserts/s against p50 and p99 latency, one point per offered rate, with the knee
/// and the bounds on `upserts_*` figures (rates as vertical lines, latencies as horizontal).
pub fn throughput(title: &str, steps: &[ThroughputStep], bounds: &[Bound]) -> String {
    let steps: Vec<ThroughputStep> = steps
        .iter()
        .filter(|s| s.achieved_per_s.is_finite() && s.p50_ms.is_finite() && s.p99_ms.is_finite())
        .cloned()
        .collect();
    if steps.is_empty() {
        return not_measured(title, "no throughput steps");
    }
    let rules: Vec<(&Bound, f64)> = bounds
        .iter()
        .filter(|b| b.kpi.starts_with("upserts") && matches!(unit(&b.kpi), "/s" | "ms"))
        .filter_map(|b| Some((b, b.value.filter(|v| v.is_finite())?)))
        .collect();
    let is_rate = |b: &Bound| b.kpi.ends_with("_per_s");
    let xs = steps.iter().map(|s| s.achieved_per_s).chain(rules.iter().filter(|r| is_rate(r.0)).map(|r| r.1));
    let ys = steps.iter().flat_map(|s| [s.p50_ms, s.p99_ms]).chain(rules.iter().filter(|r| !is_rate(r.0)).map(|r| r.1));
    let mut plot = Plot::new(title, Scale::fit(xs), Scale::fit(ys));
    plot.axes("achieved upserts/s", "latency (ms)", super::svg::tick_label);

    let knee = knee(&steps);
    for (name, colour, of) in [
        ("p50", PALETTE[0], (|s: &ThroughputStep| s.p50_ms) as fn(&ThroughputStep) -> f64),
        ("p99", PALETTE[1], |s| s.p99_ms),
    ] {
        let points: Vec<(f64, f64)> = steps.iter().map(|s| (s.achieved_per_s, of(s))).collect();
        plot.polyline(&points, colour);
        for (i, step) in steps.iter().enumerate() {
            let past_knee = knee.as_ref().is_some_and(|(k, _)| i >= *k);
            let tip = format!(
                "offered {}/s, achieved {}/s, {name} {} ms, {} errors",
                number(step.offered_per_s),
                number(step.achieved_per_s),
                number(of(step)),
                step.errors
            );
            plot.circle(step.achieved_per_s, of(step), if past_knee { 5.0 } else { 3.5 }, colour, &tip);
        }
        plot.legend(Swatch::Dot { colour: colour.into() }, format!("{name} latency"));
    }
    // Each step's offered rate, beside its p99 point (the curve climbs to the right).
    for step in &steps {
        let (x, y) = (plot.x.px(step.achieved_per_s), plot.y.px(step.p99_ms));
        let label = format!("{}/s", super::svg::tick_label(step.offered_per_s));
        plot.text(x + 7.0, (y - 7.0).max(plot.top() + 9.0), "start", "point-label", &label);
    }
    plot.legend(Swatch::None, "point labels: the rate offered at each step");
    if let Some((i, cause)) = &knee {
        let step = &steps[*i];
        let x = plot.x.px(step.achieved_per_s);
        for y in [step.p50_ms, step.p99_ms] {
            plot.raw(&format!(r#"<circle class="knee" cx="{x:.1}" cy="{:.1}" r="10"/>"#, plot.y.px(y)));
        }
        plot.text(x - 14.0, plot.y.px(step.p50_ms) + 4.0, "end", "knee-label", "knee");
        let why = match cause {
            KneeCause::Achieved { share } => format!("achieved only {:.0} % of offered", share * 100.0),
            KneeCause::P99Jump { factor } => format!("p99 {factor:.1}× the step before"),
        };
        plot.legend(
            Swatch::Ring { colour: "#222".into() },
            format!("knee at {}/s offered: {why}", number(step.offered_per_s)),
        );
    }
    for (bound, value) in &rules {
        let (colour, dash) = if bound.kind == Bound::GATE { (GATE_COLOUR, DASH_GATE) } else { ("#333", DASH_TARGET) };
        let label = format!("{} {}", bound.kind, bound_text(bound));
        if is_rate(bound) {
            plot.vertical_rule(*value, (colour, dash), &label, 0, true);
        } else {
            plot.horizontal_rule(*value, (colour, dash), &label);
        }
        plot.legend(
            Swatch::Line { colour: colour.into(), dash: Some(dash) },
            format!("{} {} {}: {}", bound.kind, bound.kpi, bound_text(bound), bound.verdict()),
        );
    }
    plot.finish()
}

/// One horizontal bar per session kind: its phases' medians stacked in the order they happen,
/// `other` up to the median total where the phases fall short of it, and the total marked.
pub fn phases(
    title: &str,
    phases_ms: &BTreeMap<String, BTreeMap<String, f64>>,
    start_ms: &BTreeMap<String, Vec<f64>>,
) -> String {
    let kinds = ordered(phases_ms.keys(), KIND_ORDER);
    let stacked_names =
        ordered(phases_ms.values().flat_map(|p| p.keys()).filter(|name| !SPANS.contains(&name.as_str())), PHASE_ORDER);
    if kinds.is_empty() || stacked_names.is_empty() {
        return not_measured(title, "no phase timings");
    }
    struct Bar<'a> {
        kind: &'a str,
        segments: Vec<(&'a str, f64)>,
        total: Option<f64>,
        spans: Vec<(&'a str, f64)>,
    }
    let bars: Vec<Bar> = kinds
        .iter()
        .map(|kind| {
            let timings = &phases_ms[*kind];
            let segments = stacked_names
                .iter()
                .filter_map(|name| Some((*name, *timings.get(*name)?)))
                .filter(|(_, ms)| ms.is_finite() && *ms > 0.0)
                .collect();
            let start_p50 = start_ms.get(*kind).and_then(|s| percentile(s, 50.0));
            let total = timings.get("total").copied().or(start_p50).filter(|v| v.is_finite());
            let spans = SPANS.iter().filter_map(|name| Some((*name, *timings.get(*name)?))).collect();
            Bar { kind, segments, total, spans }
        })
        .collect();
    let sums = bars.iter().map(|b| b.segments.iter().map(|s| s.1).sum::<f64>());
    let xs: Vec<f64> = sums.chain(bars.iter().filter_map(|b| b.total)).collect();
    let area = bars.len() as f64 * (BAR_HEIGHT + BAR_GAP) + BAR_GAP;
    let mut plot = Plot::sized(
        title,
        Scale::linear(0.0, xs.iter().copied().fold(1e-9, f64::max)),
        Scale::linear(0.0, 1.0),
        96.0,
        area,
    );
    plot.x_axis("median time (ms)");
    let colour = |name: &str| PALETTE[stacked_names.iter().position(|n| *n == name).unwrap_or(0) % PALETTE.len()];
    let mut other_drawn = false;
    for (row, bar) in bars.iter().enumerate() {
        let top = plot.top() + BAR_GAP + row as f64 * (BAR_HEIGHT + BAR_GAP);
        let mid = top + BAR_HEIGHT / 2.0 + 4.0;
        plot.text(plot.left() - 8.0, mid, "end", "category", bar.kind);
        let mut at = 0.0;
        for (name, ms) in &bar.segments {
            let (x0, x1) = (plot.x.px(at), plot.x.px(at + ms));
            plot.bar(
                x0,
                top,
                (x1 - x0).max(0.5),
                BAR_HEIGHT,
                colour(name),
                &format!("{} {name}: {} ms", bar.kind, number(*ms)),
            );
            if x1 - x0 > 30.0 {
                plot.text((x0 + x1) / 2.0, mid, "middle", "bar-label", &number(*ms));
            }
            at += ms;
        }
        let end = match bar.total {
            Some(total) if total > at * 1.01 => {
                let (x0, x1) = (plot.x.px(at), plot.x.px(total));
                let tip = format!("{}: {} ms of the total not in a phase", bar.kind, number(total - at));
                plot.bar(x0, top, x1 - x0, BAR_HEIGHT, OTHER_COLOUR, &tip);
                other_drawn = true;
                total
            }
            _ => at,
        };
        if let Some(total) = bar.total {
            let x = plot.x.px(total);
            plot.line(x, top - 4.0, x, top + BAR_HEIGHT + 4.0, "total-mark", None);
        }
        let label = match bar.total {
            Some(total) => format!("total {} ms", number(total)),
            None => format!("{} ms", number(at)),
        };
        // Timings that span phases are not drawn; the label's tooltip lists them.
        let spans: Vec<String> = bar.spans.iter().map(|(name, ms)| format!("{name} {} ms", number(*ms))).collect();
        let (x, y, anchor) = if plot.x.px(end) + 6.0 > plot.right() - 80.0 {
            (plot.x.px(end) - 4.0, top - 3.0, "end")
        } else {
            (plot.x.px(end) + 6.0, mid, "start")
        };
        plot.raw(&format!(
            r#"<text class="point-label" x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}<title>{}</title></text>"#,
            escape(&label),
            escape(&spans.join(", "))
        ));
    }
    for name in &stacked_names {
        plot.legend(Swatch::Box { colour: colour(name).into() }, *name);
    }
    if other_drawn {
        plot.legend(Swatch::Box { colour: OTHER_COLOUR.into() }, "other (not in a phase)");
    }
    plot.legend(Swatch::Line { colour: "#222".into(), dash: None }, "total (request → running)");
    plot.legend_columns(3);
    plot.finish()
}

/// `names` deduplicated: those in `order` first, in that order, then the rest alphabetically.
fn ordered<'a>(names: impl Iterator<Item = &'a String>, order: &[&str]) -> Vec<&'a str> {
    let mut names: Vec<&str> = names.map(String::as_str).collect();
    names.sort_by_key(|n| (order.iter().position(|o| o == n).unwrap_or(order.len()), *n));
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered_per_s: f64, achieved_per_s: f64, p99_ms: f64) -> ThroughputStep {
        ThroughputStep { offered_per_s, achieved_per_s, p50_ms: p99_ms / 4.0, p99_ms, errors: 0 }
    }

    #[test]
    fn the_knee_is_where_achieved_stops_following_offered() {
        let steps = [step(1000.0, 1000.0, 5.0), step(2000.0, 1990.0, 6.0), step(4000.0, 3000.0, 9.0)];
        assert_eq!(knee(&steps), Some((2, KneeCause::Achieved { share: 0.75 })));
    }

    #[test]
    fn the_knee_is_where_p99_jumps() {
        let steps = [step(1000.0, 1000.0, 5.0), step(2000.0, 1990.0, 6.0), step(3000.0, 2990.0, 30.0)];
        assert_eq!(knee(&steps), Some((2, KneeCause::P99Jump { factor: 5.0 })));
        assert_eq!(knee(&steps[..2]), None, "no knee while the server keeps up");
    }

    #[test]
    fn percentiles_are_read_from_figure_names() {
        assert_eq!(percentile_of("delta_p99_ms"), Some(99.0));
        assert_eq!(percentile_of("fanout_1000_p50_ms"), Some(50.0));
        assert_eq!(percentile_of("upserts_per_s"), None);
    }

    #[test]
    fn many_samples_are_drawn_through_quantiles() {
        let samples: Vec<f64> = (1..=2000).map(f64::from).collect();
        let points = cdf_points(&samples, 0.0);
        assert_eq!(points.len(), CDF_POINTS + 1);
        assert_eq!(points.last(), Some(&(2000.0, 100.0)));
        assert_eq!(
            cdf_points(&[3.0], 1.0),
            vec![(1.0, 0.0), (3.0, 0.0), (3.0, 100.0)],
            "one sample: a step with a width"
        );
    }
}

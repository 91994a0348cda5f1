//! `report.html`: a KPI run as one self-contained page a person reads at a glance — how the run
//! was made (mode, quick or full, machine, parameters, notes), every figure beside its floor and
//! its bounds with met or missed, then the plots: latency CDFs with the bounds drawn in, the
//! throughput knee, and the session start broken into phases.
//!
//! **Self-contained**: no external resource of any kind (styles inline, plots as inline SVG
//! written here), so the page opens anywhere, offline, as a CI artifact. Its one script only
//! checks, after load, that every plot drew marks with a non-zero size and writes the count to
//! `<body data-plots-rendered="n/total">`, which the browser test reads back.

mod plots;
mod svg;

pub use plots::{knee, KneeCause};

use crate::report::{Mode, Report};
use crate::table::{bound_text, describe, number, ratio, rows, with_unit, Bound, Row};
use plots::{Line, KIND_ORDER};
use std::fmt::Write;
use svg::PALETTE;

/// The page for `report`, with `bounds` (the gate's and the targets', already judged) in the
/// table and drawn on the plots.
pub fn render(report: &Report, bounds: &[Bound]) -> String {
    let mut page = String::from(HEAD);
    page.push_str(&header(report, bounds));
    page.push_str(&figures(report, bounds));
    page.push_str("<h2>Plots</h2><div class=\"plots\">");
    for plot in plots(report, bounds) {
        let _ = write!(page, "<figure>{plot}</figure>");
    }
    page.push_str(&steps(report));
    page.push_str("</div>");
    page.push_str(SCRIPT);
    page.push_str("</body></html>\n");
    page
}

/// Every plot the page draws, in reading order (a "not measured" box where one has no data).
fn plots(report: &Report, bounds: &[Bound]) -> Vec<String> {
    let series = &report.series;
    let kinds: Vec<&String> = {
        let mut kinds: Vec<&String> = series.start_ms.keys().collect();
        kinds.sort_by_key(|k| (KIND_ORDER.iter().position(|o| o == k).unwrap_or(KIND_ORDER.len()), *k));
        kinds
    };
    let starts: Vec<Line> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| Line {
            name: kind.to_string(),
            samples: &series.start_ms[*kind],
            colour: PALETTE[KIND_ORDER.iter().position(|o| o == kind).unwrap_or(i) % PALETTE.len()],
            kpi_prefix: format!("start_{kind}_"),
        })
        .collect();
    let line = |name: &str, samples, colour, kpi_prefix: &str| Line {
        name: name.into(),
        samples,
        colour,
        kpi_prefix: kpi_prefix.into(),
    };
    let deltas = [
        line("edit sent → applied on disk (delta)", &series.delta_ms[..], PALETTE[0], "delta_"),
        line("commit → delivered on a WebSocket", &series.delivered_ms, PALETTE[1], "delivered_"),
        line("commit → LISTEN (the floor)", &series.floor_notify_ms, "#7f7f7f", "floor_notify_"),
    ];
    let fanout = [line("first write → last of 1,000 sockets", &series.fanout_ms[..], PALETTE[3], "fanout_")];
    vec![
        plots::cdf("Session start: request → agent running", "time to running (ms)", &starts, bounds),
        plots::cdf("Edit → applied on an agent's disk, beside its floor", "latency (ms)", &deltas, bounds),
        plots::throughput("Sustained upserts: throughput against latency", &series.throughput, bounds),
        plots::cdf("One event to 1,000 sockets", "latency (ms)", &fanout, bounds),
        plots::phases("Session start by phase (medians)", &series.start_phases_ms, &series.start_ms),
    ]
}

fn header(report: &Report, bounds: &[Bound]) -> String {
    let mut html = String::from("<h1>fsync KPI run</h1><p class=\"badges\">");
    let mode = match report.mode {
        Mode::Local => "local: everything started on this machine, floors included",
        Mode::Remote => "remote: client-side figures against a deployment",
    };
    let _ = write!(html, "<span class=\"badge\">{}</span>", escape(mode));
    let run = if report.quick { "quick run (fewer samples)" } else { "full run" };
    let _ = write!(html, "<span class=\"badge\">{run}</span>");
    for kind in [Bound::GATE, Bound::TARGET] {
        let of_kind: Vec<&Bound> = bounds.iter().filter(|b| b.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let missed = of_kind.iter().filter(|b| b.met == Some(false)).count();
        let unjudged = of_kind.iter().filter(|b| b.met.is_none()).count();
        let (class, text) = match (missed, unjudged) {
            (0, 0) => ("met", format!("{kind}s: {n} of {n} met", n = of_kind.len())),
            (0, u) => ("unjudged", format!("{kind}s: none missed, {u} of {} not judged", of_kind.len())),
            (m, _) => ("missed", format!("{kind}s: {m} of {} missed", of_kind.len())),
        };
        let _ = write!(html, "<span class=\"badge {class} {kind}\">{text}</span>");
    }
    html.push_str("</p>");
    let m = &report.machine;
    let mut machine = format!("{} cores, {} MiB, {}, {}", m.cores, number(m.memory_mib as f64), m.cpu, m.os);
    if let Some(postgres) = &m.postgres {
        let _ = write!(machine, ", PostgreSQL {postgres}");
    }
    let _ = write!(html, "<p class=\"machine\"><b>Machine</b> {}</p>", escape(&machine));
    if !report.notes.is_empty() {
        html.push_str("<ul class=\"notes\">");
        for note in &report.notes {
            let _ = write!(html, "<li>{}</li>", escape(note));
        }
        html.push_str("</ul>");
    }
    if !report.parameters.is_empty() {
        html.push_str("<dl class=\"parameters\">");
        for (name, value) in &report.parameters {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(html, "<div><dt>{}</dt><dd>{}</dd></div>", escape(name), escape(&value));
        }
        html.push_str("</dl>");
    }
    html
}

/// The table of every figure.
fn figures(report: &Report, bounds: &[Bound]) -> String {
    let mut html = String::from(
        "<h2>Figures</h2><table class=\"figures\"><thead><tr><th>figure</th><th>value</th><th>floor</th>\
         <th>ratio</th><th>gate (the plan's budget)</th><th>target (ours)</th></tr></thead><tbody>",
    );
    for row in rows(&report.kpis, &report.floors, bounds) {
        html.push_str(&figure_row(&row));
    }
    html.push_str("</tbody></table>");
    html
}

fn figure_row(row: &Row) -> String {
    let class = if row.gates.iter().any(|b| b.met == Some(false)) { " class=\"gate-missed\"" } else { "" };
    let description = describe(row.kpi).map_or(String::new(), |d| format!("<small>{}</small>", escape(d)));
    let value = row.value.map_or_else(|| "<span class=\"none\">not measured</span>".into(), |v| with_unit(row.kpi, v));
    let floor = match row.floor {
        Some((name, Some(v))) => format!("{}<small><code>{}</code></small>", with_unit(name, v), escape(name)),
        Some((name, None)) => {
            format!("<span class=\"none\">not measured</span><small><code>{}</code></small>", escape(name))
        }
        None => String::new(),
    };
    let ratio = row.ratio.map(ratio).unwrap_or_default();
    format!(
        "<tr{class}><td><code>{}</code>{description}</td><td class=\"num\">{value}</td><td class=\"num\">{floor}</td>\
         <td class=\"num\">{ratio}</td><td>{}</td><td>{}</td></tr>",
        escape(row.kpi),
        bound_cells(&row.gates),
        bound_cells(&row.targets)
    )
}

fn bound_cells(bounds: &[&Bound]) -> String {
    bounds
        .iter()
        .map(|b| {
            let class = match b.met {
                Some(true) => "met",
                Some(false) => "missed",
                None => "unjudged",
            };
            format!("<div class=\"bound {class} {}\"><b>{}</b> {}</div>", b.kind, b.verdict(), escape(&bound_text(b)))
        })
        .collect()
}

/// The throughput steps as numbers, beside the plots.
fn steps(report: &Report) -> String {
    let steps = &report.series.throughput;
    if steps.is_empty() {
        return String::new();
    }
    let knee = knee(steps).map(|(i, _)| i);
    let mut html = String::from(
        "<figure class=\"numbers\"><div class=\"title\">Sustained upserts: the steps</div><table class=\"steps\"><thead><tr><th class=\"num\">offered/s</th>\
         <th class=\"num\">achieved/s</th><th class=\"num\">p50</th><th class=\"num\">p99</th><th class=\"num\">errors</th>\
         <th></th></tr></thead><tbody>",
    );
    for (i, s) in steps.iter().enumerate() {
        let mark = if knee == Some(i) { "knee" } else { "" };
        let _ = write!(
            html,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{mark}</td></tr>",
            number(s.offered_per_s),
            number(s.achieved_per_s),
            with_unit("_ms", s.p50_ms),
            with_unit("_ms", s.p99_ms),
            s.errors
        );
    }
    html.push_str("</tbody></table></figure>");
    html
}

/// `text` safe inside HTML and SVG text and attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fsync KPI run</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; background: #f6f7f9; margin: 24px 32px; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 28px 0 10px; }
code { font: 12.5px ui-monospace, "SFMono-Regular", Menlo, monospace; }
small { display: block; color: #666; font-size: 12px; }
.badges { margin: 0 0 8px; }
.badge { display: inline-block; padding: 3px 10px; margin: 0 6px 6px 0; border-radius: 12px; background: #e4e7ec; font-size: 13px; }
.badge.met { background: #d7f0dc; color: #14532d; }
.badge.missed { background: #fbd5d5; color: #7f1d1d; font-weight: 600; }
.badge.missed.target { background: #ffe0b2; color: #7c2d12; }
.badge.unjudged { background: #fdf1c7; color: #713f12; }
.machine { margin: 4px 0; }
.notes { background: #fff8e1; border-left: 4px solid #e0a800; padding: 8px 12px 8px 28px; margin: 10px 0; }
.parameters { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 10px 0; font-size: 13px; }
.parameters div { display: flex; gap: 6px; }
.parameters dt { color: #666; }
.parameters dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
th, td { padding: 6px 12px; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
th { background: #eef0f3; font-weight: 600; font-size: 13px; }
th.num { text-align: right; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.num small { text-align: right; }
tr.gate-missed td:first-child { box-shadow: inset 4px 0 #c62828; }
.bound { white-space: nowrap; }
.bound b { display: inline-block; min-width: 52px; padding: 0 6px; margin-right: 6px; border-radius: 4px; font-size: 12px; text-align: center; }
.bound.met b { background: #d7f0dc; color: #14532d; }
.bound.missed b { background: #c62828; color: #fff; }
.bound.missed.target b { background: #e65100; }
.bound.unjudged b { background: #fdf1c7; color: #713f12; }
.none { color: #999; font-style: italic; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; max-width: 1500px; }
figure { margin: 0; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08); border-radius: 6px; padding: 4px; }
.plot-missing { height: 120px; padding: 10px; box-sizing: border-box; }
.plot-missing .title, figure.numbers .title { font-weight: 600; font-size: 15px; }
figure.numbers { padding: 14px 12px; align-self: start; }
figure.numbers table { box-shadow: none; margin-top: 10px; }
.plot-missing p { color: #666; }
svg.plot { display: block; width: 100%; height: auto; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
svg .title { font-size: 15px; font-weight: 600; fill: #1d1d1f; }
svg .grid { stroke: #e6e6e6; }
svg .grid.minor { stroke: #f3f3f3; }
svg .axis { stroke: #444; }
svg .rule { stroke-width: 1.6; }
svg .tick { font-size: 11px; fill: #555; }
svg .axis-name { font-size: 12px; fill: #333; }
svg .legend { font-size: 12px; fill: #333; }
svg .swatch { stroke-width: 2.5; }
svg .series { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .rule-label { font-size: 11px; font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg .point-label { font-size: 11px; fill: #333; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg .bar-label { font-size: 11px; fill: #fff; font-weight: 600; }
svg .category { font-size: 12px; fill: #333; }
svg .total-mark { stroke: #222; stroke-width: 2; }
svg .knee { fill: none; stroke: #222; stroke-width: 1.5; }
svg .knee-label { font-size: 12px; font-weight: 600; fill: #222; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
</style></head><body>
"#;

/// Counts the plots whose data marks have a size once laid out (a plot with broken coordinates
/// draws nothing visible) and writes `n/total` where a test can read it.
const SCRIPT: &str = r#"<script>
addEventListener("load", function () {
  var plots = document.querySelectorAll("svg.plot"), drawn = 0;
  plots.forEach(function (svg) {
    var marks = svg.querySelectorAll("path, polyline, rect.bar, circle");
    if (Array.prototype.some.call(marks, function (m) { var b = m.getBBox(); return b.width > 0 && b.height > 0; })) drawn++;
  });
  document.body.dataset.plotsRendered = drawn + "/" + plots.length;
});
</script>
"#;

//! `--trace-html FILE`: a run as one self-contained page a person reads at a glance. Hosts are
//! lanes (columns), time runs down, one row per event; messages are arrows between lanes, faults
//! are shaded bands over the lanes they touch from the moment they begin to the moment they heal,
//! and a violated invariant is a red row, listed again at the top with the command that replays
//! the run.

use crate::trace::{Event, Mark};
use crate::world::Outcome;
use std::collections::BTreeMap;
use std::fmt::Write;

const ROW: usize = 18;
const LANE: usize = 150;
const LEFT: usize = 90;
const TOP: usize = 40;
/// Rows drawn at most (a longer run is cut, and the page says so).
const MAX_ROWS: usize = 4_000;

/// The page for `outcome`; `replay` is the command that runs it again.
pub fn render(outcome: &Outcome, replay: &str) -> String {
    let events: Vec<&Event> = outcome.events.iter().take(MAX_ROWS).collect();
    let lanes = lanes(&outcome.events);
    let mut page = String::new();
    page.push_str(HEAD);
    let _ = write!(page, "<h1>fsync-sim seed {}</h1>", outcome.seed);
    page.push_str(&summary(outcome, replay));
    if outcome.events.len() > MAX_ROWS {
        let _ = write!(page, "<p>The first {MAX_ROWS} of {} events are drawn.</p>", outcome.events.len());
    }
    page.push_str(LEGEND);
    page.push_str(&diagram(&events, &lanes));
    page.push_str("</body></html>\n");
    page
}

fn summary(outcome: &Outcome, replay: &str) -> String {
    let mut html = String::new();
    let drawn = &outcome.drawn;
    let _ = write!(
        html,
        "<p>{} server(s), container tokens live {} s, {:.1} simulated s, trace <code>{}</code>.</p>",
        drawn.servers,
        drawn.token_ttl_s,
        outcome.sim_seconds,
        &outcome.trace_hash[..16]
    );
    let _ = write!(html, "<p>Replay: <code>{}</code></p>", escape(replay));
    if outcome.violations.is_empty() {
        html.push_str("<p class=ok>Every checker held.</p>");
    } else {
        html.push_str("<ul class=bad>");
        for (n, v) in outcome.violations.iter().enumerate() {
            let _ = write!(
                html,
                "<li><a href=\"#violation-{n}\">invariant {}</a>: {}</li>",
                escape(v.invariant),
                escape(&v.detail)
            );
        }
        html.push_str("</ul>");
    }
    html.push_str("<table><tr><th>fault</th><th>at</th><th>lasts</th></tr>");
    for fault in &drawn.faults {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{:.3} s</td><td>{:.3} s</td></tr>",
            escape(&format!("{:?}", fault.kind)),
            fault.at.as_secs_f64(),
            fault.lasts.as_secs_f64()
        );
    }
    html.push_str("</table>");
    html
}

/// The lanes in reading order: the world, servers, editors, agents, then the checkers.
fn lanes(events: &[Event]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    add("world");
    for event in events {
        add(&event.lane);
        match &event.mark {
            Mark::Message { to, .. } => add(to),
            Mark::Fault { lanes } => lanes.iter().for_each(|l| add(l)),
            _ => {}
        }
    }
    let rank = |name: &str| {
        ["world", "server", "editor", "agent", "driver", "watcher"]
            .iter()
            .position(|p| name.starts_with(p))
            .unwrap_or(9)
    };
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    names
}

fn diagram(events: &[&Event], lanes: &[String]) -> String {
    let column: BTreeMap<&str, usize> =
        lanes.iter().enumerate().map(|(i, l)| (l.as_str(), LEFT + i * LANE + LANE / 2)).collect();
    let width = LEFT + lanes.len() * LANE;
    let height = TOP + (events.len() + 1) * ROW;
    let mut svg = String::new();
    let _ = write!(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">");
    svg.push_str(DEFS);
    svg.push_str(&bands(events, lanes, &column, height));
    for (lane, x) in &column {
        let _ = write!(
            svg,
            "<line class=lane x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{height}\"/><text class=head x=\"{x}\" y=\"{}\">{}</text>",
            TOP - 12,
            escape(lane)
        );
    }
    let mut violations = 0;
    for (row, event) in events.iter().enumerate() {
        let y = TOP + (row + 1) * ROW;
        let x = column.get(event.lane.as_str()).copied().unwrap_or(LEFT);
        let _ = write!(svg, "<text class=time x=\"4\" y=\"{}\">{:.3} s</text>", y + 4, event.at.as_secs_f64());
        let title = format!("<title>{}</title>", escape(&event.line()));
        match &event.mark {
            Mark::Note => {
                let _ = write!(
                    svg,
                    "<g>{title}<circle class=note cx=\"{x}\" cy=\"{y}\" r=\"3\"/><text class=label x=\"{}\" y=\"{}\">{}</text></g>",
                    x + 6,
                    y + 4,
                    escape(&short(&event.text, 60))
                );
            }
            Mark::Message { to, .. } => {
                let x2 = column.get(to.as_str()).copied().unwrap_or(x);
                let tip = if x2 >= x { x2.saturating_sub(4) } else { x2 + 4 };
                let _ = write!(
                    svg,
                    "<g>{title}<line class=msg x1=\"{x}\" y1=\"{y}\" x2=\"{tip}\" y2=\"{y}\" marker-end=\"url(#arrow)\"/><text class=label x=\"{}\" y=\"{}\">{}</text></g>",
                    x.min(x2) + 8,
                    y - 3,
                    escape(&short(&event.text, 40))
                );
            }
            Mark::Fault { .. } | Mark::Healed => {
                let class = if matches!(event.mark, Mark::Healed) { "healed" } else { "fault" };
                let word = if class == "fault" { "fault" } else { "healed" };
                let _ = write!(
                    svg,
                    "<g>{title}<text class={class} x=\"{}\" y=\"{}\">{word}: {}</text></g>",
                    LEFT,
                    y + 4,
                    escape(&short(&event.text, 90))
                );
            }
            Mark::Violation => {
                let _ = write!(
                    svg,
                    "<g id=\"violation-{violations}\">{title}<rect class=violation x=\"0\" y=\"{}\" width=\"{width}\" height=\"{ROW}\"/><text class=bad x=\"{}\" y=\"{}\">VIOLATION {}</text></g>",
                    y - ROW / 2,
                    LEFT,
                    y + 4,
                    escape(&short(&event.text, 140))
                );
                violations += 1;
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A shaded band per fault over the lanes it touches, from its row to its heal's row.
fn bands(events: &[&Event], lanes: &[String], column: &BTreeMap<&str, usize>, height: usize) -> String {
    let mut svg = String::new();
    for (row, event) in events.iter().enumerate() {
        let Mark::Fault { lanes: touched } = &event.mark else { continue };
        let kind = event.text.split(" for ").next().unwrap_or_default();
        let healed = events
            .iter()
            .enumerate()
            .skip(row)
            .find(|(_, e)| e.mark == Mark::Healed && e.text == kind)
            .map_or(height, |(r, _)| TOP + (r + 1) * ROW);
        let y = TOP + (row + 1) * ROW;
        let xs: Vec<usize> = if touched.is_empty() {
            lanes.iter().filter_map(|l| column.get(l.as_str()).copied()).collect()
        } else {
            touched.iter().filter_map(|l| column.get(l.as_str()).copied()).collect()
        };
        for x in xs {
            let _ = write!(
                svg,
                "<rect class=band x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                x - LANE / 2 + 4,
                LANE - 8,
                healed.saturating_sub(y).max(ROW),
                escape(&event.text)
            );
        }
    }
    svg
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const HEAD: &str = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>fsync-sim trace</title><style>\
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}code{background:#f3f3f3;padding:1px 4px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
.ok{color:#176b2c}.bad{color:#b00020}ul.bad{font-weight:600}\
svg text{font:10px ui-monospace,monospace}svg .head{font-weight:700;font-size:12px;text-anchor:middle}\
.lane{stroke:#bbb;stroke-dasharray:3 3}.note{fill:#555}.msg{stroke:#2b6cb0;stroke-width:1.2}\
.label{fill:#333}.time{fill:#888}.fault{fill:#c05600;font-weight:700}.healed{fill:#176b2c}\
.band{fill:#f6ad55;opacity:.18}.violation{fill:#fed7d7}svg .bad{fill:#b00020;font-weight:700}\
.legend span{margin-right:16px}</style></head><body>";

const LEGEND: &str = "<p class=legend><span>● a host's note</span><span style=\"color:#2b6cb0\">→ a message \
(editor → server: a write and its answer; server → agent: what the agent's directory shows)</span>\
<span style=\"color:#c05600\">▮ a fault, shaded until it heals</span><span class=bad>▬ a violated invariant</span>\
</p><p>Hover over a row for its full text.</p>";

const DEFS: &str = "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#2b6cb0\"/></marker></defs>";

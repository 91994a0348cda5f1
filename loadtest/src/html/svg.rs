//! A small SVG vocabulary for the report's plots: a [`Scale`] (linear, or logarithmic when the
//! values span more than [`LOG_SPAN_DECADES`]) with round ticks, and a [`Plot`] that writes a
//! titled frame, axes with tick labels and gridlines, dashed reference lines, data marks and a
//! legend into one `<svg class="plot">`.
//!
//! Only data goes into `path`, `polyline`, `circle` and `rect.bar`: the page's check that every
//! plot drew something counts those, so axes, gridlines, reference lines and legend swatches use
//! `line` and plain `rect`.

use super::escape;
use crate::table::number;
use std::fmt::Write;

/// Decades a range must span before an axis turns logarithmic (10^1.5 ≈ 32×).
pub const LOG_SPAN_DECADES: f64 = 1.5;
/// The share of a linear scale's range added above its largest value before rounding.
const LINEAR_HEADROOM: f64 = 0.04;
/// Width of every plot, in px (two sit side by side on a wide screen).
pub const WIDTH: f64 = 660.0;
/// Height of a plot's drawing area, in px.
pub const AREA_HEIGHT: f64 = 260.0;
const LEFT: f64 = 66.0;
const RIGHT: f64 = 28.0;
const TOP: f64 = 44.0;
/// From the drawing area's bottom to the legend: tick labels and the x axis's label.
const BELOW: f64 = 54.0;
const LEGEND_ROW: f64 = 17.0;

/// The colours series take in turn (Tableau 10, readable by most colour-blind readers).
pub const PALETTE: &[&str] =
    &["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#9c755f", "#e15759", "#76b7b2", "#edc948", "#ff9da7", "#bab0ac"];
/// The plan's budgets are drawn in one colour whatever they bound.
pub const GATE_COLOUR: &str = "#b00020";

/// Values → pixels along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    /// The distance between ticks of a linear scale.
    step: f64,
    px_lo: f64,
    px_hi: f64,
}

impl Scale {
    /// A scale over the finite values in `values`: logarithmic when the positive ones span more
    /// than [`LOG_SPAN_DECADES`], otherwise linear from 0 (or from the smallest value, if below 0).
    pub fn fit(values: impl IntoIterator<Item = f64>) -> Scale {
        let (mut min, mut max, mut min_positive) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
            if v > 0.0 {
                min_positive = min_positive.min(v);
            }
        }
        if !min.is_finite() {
            return Scale::linear(0.0, 1.0);
        }
        if min_positive.is_finite() && (max / min_positive).log10() > LOG_SPAN_DECADES {
            return Scale::log(min_positive, max);
        }
        // A little headroom, so a value (or a bound) on a round number does not sit on the frame.
        Scale::linear(min.min(0.0), max + (max - min.min(0.0)) * LINEAR_HEADROOM)
    }

    /// `[lo, hi]` widened to round steps.
    pub fn linear(lo: f64, hi: f64) -> Scale {
        let (lo, hi) = if hi - lo > f64::EPSILON * hi.abs().max(1.0) { (lo, hi) } else { (lo - 1.0, hi + 1.0) };
        let step = nice_step((hi - lo) / 6.0);
        let lo = (lo / step).floor() * step;
        let hi = (hi / step).ceil() * step;
        Scale { lo, hi, log: false, step, px_lo: 0.0, px_hi: 1.0 }
    }

    /// `[lo, hi]` ticked every `step` (`lo` and `hi` multiples of it): a percent axis.
    pub fn stepped(lo: f64, hi: f64, step: f64) -> Scale {
        Scale { lo, hi, log: false, step, px_lo: 0.0, px_hi: 1.0 }
    }

    /// `[lo, hi]` (both > 0) widened to the nearest 1, 2 or 5 × 10ⁿ.
    pub fn log(lo: f64, hi: f64) -> Scale {
        let lo = one_two_five(lo, false);
        let hi = one_two_five(hi, true).max(lo * 10.0);
        Scale { lo, hi, log: true, step: 0.0, px_lo: 0.0, px_hi: 1.0 }
    }

    /// The same scale drawn from pixel `from` (at `lo`) to pixel `to` (at `hi`).
    pub fn onto(self, from: f64, to: f64) -> Scale {
        Scale { px_lo: from, px_hi: to, ..self }
    }

    /// Where `v` falls, in px; values outside the scale sit on its edge.
    pub fn px(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.px_lo + t.clamp(0.0, 1.0) * (self.px_hi - self.px_lo)
    }

    /// Round values to label: steps of 1, 2 or 5 × 10ⁿ; on a log scale 1, 2, 5 per decade (only
    /// the decades when there are more than [`MAX_DECADES_FOR_125`]).
    pub fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        if self.log {
            let mantissas: &[f64] = if self.wide() { &[1.0] } else { &[1.0, 2.0, 5.0] };
            ticks = self.log_values(mantissas);
        } else {
            // At most 7 or so: linear() chose the step for about six intervals.
            let count = ((self.hi - self.lo) / self.step).round() as usize;
            ticks.extend((0..=count.min(50)).map(|i| self.lo + i as f64 * self.step));
        }
        ticks
    }
}

/// A log scale over more decades than this labels only the decades.
const MAX_DECADES_FOR_125: f64 = 3.5;

impl Scale {
    /// Unlabelled gridlines between the labelled ticks: 2 and 5 × 10ⁿ on a wide log scale.
    pub fn minor_ticks(&self) -> Vec<f64> {
        if self.log && self.wide() {
            self.log_values(&[2.0, 5.0])
        } else {
            Vec::new()
        }
    }

    fn wide(&self) -> bool {
        (self.hi / self.lo).log10() > MAX_DECADES_FOR_125
    }

    /// `m × 10ⁿ` for each mantissa `m` and every `n` whose value lies on the scale.
    fn log_values(&self, mantissas: &[f64]) -> Vec<f64> {
        let mut values = Vec::new();
        // Bounded: a scale spans a few hundred decades at the very most (f64's range).
        for exponent in self.lo.log10().floor() as i32..=self.hi.log10().ceil() as i32 {
            for m in mantissas {
                let v = m * 10f64.powi(exponent);
                if v >= self.lo * (1.0 - 1e-9) && v <= self.hi * (1.0 + 1e-9) {
                    values.push(v);
                }
            }
        }
        values
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw > 0.0 && raw.is_finite() { raw } else { 1.0 };
    let magnitude = 10f64.powf(raw.log10().floor());
    let f = raw / magnitude;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// `v` rounded down (or `up`) to 1, 2 or 5 × 10ⁿ.
fn one_two_five(v: f64, up: bool) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    let candidates = [1.0, 2.0, 5.0, 10.0].map(|m| m * magnitude);
    if !up {
        candidates.into_iter().rev().find(|c| *c <= v * (1.0 + 1e-9)).unwrap_or(magnitude)
    } else {
        candidates.into_iter().find(|c| *c >= v * (1.0 - 1e-9)).unwrap_or(10.0 * magnitude)
    }
}

fn scale_note(scale: &Scale) -> &'static str {
    if scale.log {
        ", log scale"
    } else {
        ""
    }
}

/// A tick's label: `0.5`, `20`, `1k`, `15k`.
pub fn tick_label(v: f64) -> String {
    if v.abs() >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.abs() >= 1000.0 {
        number(v)
    } else {
        let text = format!("{v:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone)]
pub enum Swatch {
    Line {
        colour: String,
        dash: Option<&'static str>,
    },
    Box {
        colour: String,
    },
    Dot {
        colour: String,
    },
    /// A hollow ring (a marked point).
    Ring {
        colour: String,
    },
    /// An entry without a mark (a series that was not measured).
    None,
}

/// One plot being written: its drawing area, scales and marks, then its legend.
pub struct Plot {
    body: String,
    legend: Vec<(Swatch, String)>,
    legend_columns: usize,
    pub x: Scale,
    pub y: Scale,
    title: String,
}

impl Plot {
    /// A plot titled `title` whose drawing area maps `x` and `y` (y grows upwards).
    pub fn new(title: &str, x: Scale, y: Scale) -> Plot {
        Plot::sized(title, x, y, LEFT, AREA_HEIGHT)
    }

    /// The same with the drawing area `left` px from the edge and `area_height` px high.
    pub fn sized(title: &str, x: Scale, y: Scale, left: f64, area_height: f64) -> Plot {
        let x = x.onto(left, WIDTH - RIGHT);
        let y = y.onto(TOP + area_height, TOP);
        Plot { body: String::new(), legend: Vec::new(), legend_columns: 1, x, y, title: title.to_owned() }
    }

    pub fn left(&self) -> f64 {
        self.x.px_lo
    }

    pub fn right(&self) -> f64 {
        WIDTH - RIGHT
    }

    pub fn top(&self) -> f64 {
        TOP
    }

    pub fn bottom(&self) -> f64 {
        self.y.px_lo
    }

    /// Gridlines and labelled ticks on both axes (`y_label_of` writes a y tick's label), and the
    /// axes' names with their units.
    pub fn axes(&mut self, x_name: &str, y_name: &str, y_label_of: fn(f64) -> String) {
        self.x_axis(x_name);
        let (left, right, top, bottom) = (self.left(), self.right(), self.top(), self.bottom());
        for v in self.y.minor_ticks() {
            let y = self.y.px(v);
            self.line(left, y, right, y, "grid minor", None);
        }
        for v in self.y.ticks() {
            let y = self.y.px(v);
            self.line(left, y, right, y, "grid", None);
            self.text(left - 6.0, y + 4.0, "end", "tick", &y_label_of(v));
        }
        self.line(left, top, left, bottom, "axis", None);
        let y_name = format!("{y_name}{}", scale_note(&self.y));
        let mid = (top + bottom) / 2.0;
        let _ = write!(
            self.body,
            r#"<text class="axis-name" text-anchor="middle" transform="translate(16 {mid:.1}) rotate(-90)">{}</text>"#,
            escape(&y_name)
        );
    }

    /// Gridlines, labelled ticks and the name of the x axis only.
    pub fn x_axis(&mut self, x_name: &str) {
        let (left, right, top, bottom) = (self.left(), self.right(), self.top(), self.bottom());
        for v in self.x.minor_ticks() {
            let x = self.x.px(v);
            self.line(x, top, x, bottom, "grid minor", None);
        }
        for v in self.x.ticks() {
            let x = self.x.px(v);
            self.line(x, top, x, bottom, "grid", None);
            self.text(x, bottom + 16.0, "middle", "tick", &tick_label(v));
        }
        self.line(left, bottom, right, bottom, "axis", None);
        let x_name = format!("{x_name}{}", scale_note(&self.x));
        self.text((left + right) / 2.0, bottom + 36.0, "middle", "axis-name", &x_name);
    }

    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, class: &str, style: Option<(&str, &str)>) {
        let style =
            style.map_or(String::new(), |(colour, dash)| format!(r#" stroke="{colour}" stroke-dasharray="{dash}""#));
        let _ =
            write!(self.body, r#"<line class="{class}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"{style}/>"#);
    }

    pub fn text(&mut self, x: f64, y: f64, anchor: &str, class: &str, text: &str) {
        let _ = write!(
            self.body,
            r#"<text class="{class}" x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    /// A data line through `points` (values, not pixels).
    pub fn polyline(&mut self, points: &[(f64, f64)], colour: &str) {
        let mut coordinates = String::new();
        for (x, y) in points {
            let _ = write!(coordinates, "{:.1},{:.1} ", self.x.px(*x), self.y.px(*y));
        }
        let _ =
            write!(self.body, r#"<polyline class="series" points="{}" stroke="{colour}"/>"#, coordinates.trim_end());
    }

    /// A data point at (`x`, `y`) in values, with a tooltip.
    pub fn circle(&mut self, x: f64, y: f64, r: f64, colour: &str, tip: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{colour}"><title>{}</title></circle>"#,
            self.x.px(x),
            self.y.px(y),
            escape(tip)
        );
    }

    /// A data bar, in pixels.
    pub fn bar(&mut self, x: f64, y: f64, width: f64, height: f64, colour: &str, tip: &str) {
        let _ = write!(
            self.body,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}" fill="{colour}"><title>{}</title></rect>"#,
            escape(tip)
        );
    }

    /// A dashed vertical reference line at `x` (a value), labelled near the top (or the bottom);
    /// `row` staggers the labels of lines that sit close together.
    pub fn vertical_rule(&mut self, x: f64, style: (&str, &str), label: &str, row: usize, bottom_label: bool) {
        let (colour, dash) = style;
        let px = self.x.px(x);
        let (top, bottom) = (self.top(), self.bottom());
        self.line(px, top, px, bottom, "rule", Some((colour, dash)));
        // The top row clears the p99 line a CDF draws just under its top.
        let y = if bottom_label { bottom - 6.0 - 13.0 * row as f64 } else { top + 16.0 + 13.0 * row as f64 };
        let (anchor, dx) = if px > self.right() - 90.0 { ("end", -4.0) } else { ("start", 4.0) };
        let _ = write!(
            self.body,
            r#"<text class="rule-label" x="{:.1}" y="{y:.1}" text-anchor="{anchor}" fill="{colour}">{}</text>"#,
            px + dx,
            escape(label)
        );
    }

    /// A dashed horizontal reference line at `y` (a value), labelled at the left.
    pub fn horizontal_rule(&mut self, y: f64, style: (&str, &str), label: &str) {
        let (colour, dash) = style;
        let py = self.y.px(y);
        let (left, right) = (self.left(), self.right());
        self.line(left, py, right, py, "rule", Some((colour, dash)));
        let _ = write!(
            self.body,
            r#"<text class="rule-label" x="{:.1}" y="{:.1}" text-anchor="start" fill="{colour}">{}</text>"#,
            left + 4.0,
            py - 4.0,
            escape(label)
        );
    }

    /// A hollow diamond at (`x`, `y`) in values: where a bound on a percentile sits.
    pub fn diamond(&mut self, x: f64, y: f64, colour: &str) {
        let (x, y) = (self.x.px(x), self.y.px(y));
        let _ = write!(
            self.body,
            r#"<polygon class="mark" points="{:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1}" fill="white" stroke="{colour}"/>"#,
            x - 5.0,
            y - 5.0,
            x + 5.0,
            y + 5.0
        );
    }

    pub fn raw(&mut self, svg: &str) {
        self.body.push_str(svg);
    }

    pub fn legend(&mut self, swatch: Swatch, label: impl Into<String>) {
        self.legend.push((swatch, label.into()));
    }

    /// Lays the legend out in `columns` (filled row by row), for many short entries.
    pub fn legend_columns(&mut self, columns: usize) {
        self.legend_columns = columns.max(1);
    }

    /// The finished `<svg class="plot">`: title, body, then the legend under the axes.
    pub fn finish(self) -> String {
        let legend_top = self.bottom() + BELOW;
        let columns = self.legend_columns;
        let rows = self.legend.len().div_ceil(columns);
        let height = legend_top + LEGEND_ROW * rows as f64 + 6.0;
        let column_width = (self.right() - self.left()) / columns as f64;
        let mut svg = String::new();
        let title = escape(&self.title);
        let _ = write!(
            svg,
            r#"<svg class="plot" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{title}"><title>{title}</title>"#
        );
        let _ = write!(svg, r#"<text class="title" x="12" y="24">{title}</text>"#);
        svg.push_str(&self.body);
        for (i, (swatch, label)) in self.legend.iter().enumerate() {
            let y = legend_top + LEGEND_ROW * (i / columns) as f64;
            let x = self.x.px_lo + column_width * (i % columns) as f64;
            match swatch {
                Swatch::Line { colour, dash } => {
                    let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
                    let _ = write!(
                        svg,
                        r#"<line class="swatch" x1="{x}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}"{dash}/>"#,
                        x + 22.0
                    );
                }
                Swatch::Box { colour } => {
                    let _ = write!(
                        svg,
                        r#"<rect x="{:.1}" y="{:.1}" width="14" height="10" fill="{colour}"/>"#,
                        x + 4.0,
                        y - 5.0
                    );
                }
                Swatch::Dot { colour } => {
                    let _ = write!(
                        svg,
                        r#"<line class="swatch" x1="{x}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="7" stroke-linecap="round"/>"#,
                        x + 22.0
                    );
                }
                Swatch::Ring { colour } => {
                    // An ellipse, not a circle: legend swatches are not data marks.
                    let _ = write!(
                        svg,
                        r#"<ellipse cx="{:.1}" cy="{y:.1}" rx="7" ry="7" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
                        x + 11.0
                    );
                }
                Swatch::None => {}
            }
            let _ =
                write!(svg, r#"<text class="legend" x="{:.1}" y="{:.1}">{}</text>"#, x + 30.0, y + 4.0, escape(label));
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_range_turns_logarithmic_with_round_ends() {
        let scale = Scale::fit([0.4, 3.0, 480.0]);
        assert!(scale.log);
        assert_eq!((scale.lo, scale.hi), (0.2, 500.0));
        assert_eq!(scale.ticks(), vec![0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]);
        let wider = Scale::fit([0.5, 15_000.0]);
        assert_eq!(wider.ticks(), vec![1.0, 10.0, 100.0, 1000.0, 10_000.0], "only decades over 4.6 of them");
        assert_eq!(wider.minor_ticks()[..3], [0.5, 2.0, 5.0]);
    }

    #[test]
    fn a_narrow_range_stays_linear_from_zero() {
        let scale = Scale::fit([12.0, 28.0]);
        assert!(!scale.log);
        assert_eq!((scale.lo, scale.hi), (0.0, 30.0));
        assert_eq!(scale.ticks(), vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]);
        assert_eq!(Scale::fit([12.0, 30.0]).hi, 40.0, "headroom over a round maximum");
        let scale = scale.onto(100.0, 400.0);
        assert_eq!(scale.px(15.0), 250.0);
        assert_eq!(scale.px(99.0), 400.0, "clamped to the edge");
    }

    #[test]
    fn no_values_or_one_value_still_make_a_scale() {
        assert_eq!(Scale::fit([]).ticks().len(), 6, "0 to 1 by 0.2");
        let one = Scale::fit([f64::NAN, 7.0]);
        assert!(one.lo <= 7.0 && one.hi > 7.0);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(20.0), "20");
        assert_eq!(tick_label(15_000.0), "15k");
        assert_eq!(tick_label(2500.0), "2,500");
    }
}

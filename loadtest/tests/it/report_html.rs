//! The report a person reads: `report.html` (self-contained, one SVG per plot, "not measured"
//! where a series is empty, and drawn by a real browser) and the terminal table.
//!
//! The browser test runs headless Chromium on the page and reads back what the page's own script
//! counted: plots whose data marks have a size once laid out. It skips when Chromium is absent,
//! unless `FSYNC_REQUIRE_BROWSER` is set (CI), when a missing browser fails. The page and its
//! screenshot stay in `target/tmp/report_html/` for a person to look at.

use fsync_loadtest::html;
use fsync_loadtest::report::{Machine, Mode, Report, Series, ThroughputStep, VERSION};
use fsync_loadtest::stats::percentile;
use fsync_loadtest::table::{self, Bound};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The plots a report with every series draws.
const PLOTS: usize = 5;
/// Chromium gets this long per run before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// `n` samples around `median` with a right tail (logistic quantiles of a log-normal-ish
/// spread), in an order that is not sorted, as measurements arrive.
fn spread(n: usize, median: f64, sigma: f64) -> Vec<f64> {
    let mut samples: Vec<f64> = (0..n)
        .map(|i| {
            let p = (i as f64 + 0.5) / n as f64;
            median * (sigma * (p / (1.0 - p)).ln()).exp()
        })
        .collect();
    // A fixed interleaving instead of randomness.
    samples.sort_by_key(|v| (v.to_bits() % 7919, v.to_bits()));
    samples
}

fn phases(list: &[(&str, f64)]) -> BTreeMap<String, f64> {
    list.iter().map(|(name, ms)| (name.to_string(), *ms)).collect()
}

/// A plausible local run: 20 starts per kind, 2,000 deltas, five throughput steps with a knee
/// at the fourth, phases per kind.
fn sample_report() -> Report {
    let start_ms: BTreeMap<String, Vec<f64>> =
        [("small", 38.0, 0.12), ("legacy_small", 430.0, 0.15), ("large_warm", 540.0, 0.1), ("large_cold", 1380.0, 0.1)]
            .into_iter()
            .map(|(kind, median, sigma)| (kind.to_string(), spread(20, median, sigma)))
            .collect();
    let start_phases_ms = BTreeMap::from([
        (
            "small".to_string(),
            phases(&[
                ("snapshot", 6.0),
                ("snapshot_reused", 6.0),
                ("spawn", 4.5),
                ("join", 5.0),
                ("download", 3.0),
                ("extract", 4.0),
                ("catch_up", 1.2),
                ("hydrate", 14.0),
                ("total", 38.0),
            ]),
        ),
        (
            "legacy_small".to_string(),
            phases(&[("spawn", 4.0), ("join", 5.0), ("download", 390.0), ("catch_up", 2.0), ("total", 430.0)]),
        ),
        (
            "large_warm".to_string(),
            phases(&[
                ("snapshot", 12.0),
                ("spawn", 4.0),
                ("join", 5.0),
                ("download", 120.0),
                ("extract", 330.0),
                ("catch_up", 2.0),
                ("total", 540.0),
            ]),
        ),
        (
            "large_cold".to_string(),
            phases(&[
                ("snapshot", 830.0),
                ("spawn", 4.0),
                ("join", 5.0),
                ("download", 125.0),
                ("extract", 335.0),
                ("catch_up", 3.0),
                ("total", 1380.0),
            ]),
        ),
    ]);
    let throughput = [
        (1000.0, 1000.0, 1.1, 4.0),
        (2000.0, 1998.0, 1.4, 6.0),
        (3000.0, 2990.0, 2.0, 11.0),
        (4000.0, 3400.0, 9.0, 48.0),
        (5000.0, 3450.0, 40.0, 210.0),
    ]
    .into_iter()
    .map(|(offered_per_s, achieved_per_s, p50_ms, p99_ms)| ThroughputStep {
        offered_per_s,
        achieved_per_s,
        p50_ms,
        p99_ms,
        errors: if offered_per_s > 4500.0 { 12 } else { 0 },
    })
    .collect();
    let series = Series {
        start_ms,
        start_phases_ms,
        delta_ms: spread(2000, 1.4, 0.35),
        floor_notify_ms: spread(2000, 0.6, 0.25),
        delivered_ms: spread(2000, 0.9, 0.3),
        fanout_ms: spread(200, 6.5, 0.2),
        throughput,
    };
    let p = |samples: &[f64], q| percentile(samples, q).expect("samples");
    let mut kpis = BTreeMap::new();
    for (kind, samples) in &series.start_ms {
        kpis.insert(format!("start_{kind}_p50_ms"), p(samples, 50.0));
    }
    kpis.insert("delta_p50_ms".into(), p(&series.delta_ms, 50.0));
    kpis.insert("delta_p99_ms".into(), p(&series.delta_ms, 99.0));
    kpis.insert("floor_notify_p50_ms".into(), p(&series.floor_notify_ms, 50.0));
    kpis.insert("delivered_p50_ms".into(), p(&series.delivered_ms, 50.0));
    kpis.insert("fanout_1000_p50_ms".into(), p(&series.fanout_ms, 50.0));
    kpis.insert("unzip_large_ms".into(), 600.0);
    kpis.insert("extract_large_ms".into(), 335.0);
    kpis.insert("upserts_per_s".into(), 3400.0);
    kpis.insert("upserts_p99_ms".into(), 48.0);
    kpis.insert("agent_hydrate_rss_mib".into(), 17.8);
    let floors = BTreeMap::from([
        ("delivered_p50_ms".to_string(), "floor_notify_p50_ms".to_string()),
        ("delta_p50_ms".to_string(), "floor_notify_p50_ms".to_string()),
        ("extract_large_ms".to_string(), "unzip_large_ms".to_string()),
    ]);
    let parameters = BTreeMap::from([
        ("agents".to_string(), serde_json::json!(100)),
        ("edit_rate_per_s".to_string(), serde_json::json!(200)),
        ("sessions_per_kind".to_string(), serde_json::json!(20)),
        ("fixture_seed".to_string(), serde_json::json!(7)),
        ("large_fixture".to_string(), serde_json::json!("large (10,000 files, 100 MB)")),
    ]);
    Report {
        version: VERSION,
        mode: Mode::Local,
        quick: false,
        machine: Machine {
            cores: 2,
            memory_mib: 7936,
            cpu: "AMD EPYC 7B13".into(),
            os: "Debian GNU/Linux 12".into(),
            postgres: Some("16.4".into()),
        },
        parameters,
        kpis,
        floors,
        series,
        notes: vec!["the legacy large start was left out: it takes minutes".into()],
        metrics_scrape: None,
    }
}

/// The bounds of `ci/kpi-budgets.toml` as the gate judges them on `report`, written out here so
/// this test does not depend on how budgets are read: two gates, targets met and missed, one
/// target on a figure the run did not measure.
fn sample_bounds(report: &Report) -> Vec<Bound> {
    let kpi = |name: &str| report.kpis.get(name).copied();
    let bound = |kpi_name: &str, kind, text: &str, value: f64, at_most: bool| Bound {
        kpi: kpi_name.into(),
        kind,
        text: text.into(),
        value: Some(value),
        met: kpi(kpi_name).map(|v| if at_most { v <= value } else { v >= value }),
    };
    let floor = kpi("floor_notify_p50_ms").expect("floor");
    let unzip = kpi("unzip_large_ms").expect("unzip");
    vec![
        bound("start_small_p50_ms", Bound::GATE, "≤ 15000", 15000.0, true),
        bound("delta_p50_ms", Bound::GATE, "≤ 500", 500.0, true),
        bound("start_small_p50_ms", Bound::TARGET, "≤ 50", 50.0, true),
        bound("start_large_warm_p50_ms", Bound::TARGET, "≤ 600", 600.0, true),
        bound("start_large_cold_p50_ms", Bound::TARGET, "≤ 1500", 1500.0, true),
        bound("extract_large_ms", Bound::TARGET, "≤ 0.6× unzip_large_ms", 0.6 * unzip, true),
        bound("delta_p50_ms", Bound::TARGET, "≤ 2", 2.0, true),
        bound("delta_p99_ms", Bound::TARGET, "≤ 10", 10.0, true),
        bound("delta_applied_fraction", Bound::TARGET, "≥ 1", 1.0, false),
        bound("delivered_p50_ms", Bound::TARGET, "≤ 2× floor_notify_p50_ms", 2.0 * floor, true),
        bound("fanout_1000_p50_ms", Bound::TARGET, "≤ 10", 10.0, true),
        bound("upserts_per_s", Bound::TARGET, "≥ 3000", 3000.0, false),
        bound("upserts_p99_ms", Bound::TARGET, "≤ 50", 50.0, true),
        bound("agent_hydrate_rss_mib", Bound::TARGET, "≤ 16", 16.0, true),
    ]
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_full_report_draws_every_plot_and_every_figure_from_nothing_but_itself() {
    let report = sample_report();
    let bounds = sample_bounds(&report);
    let page = html::render(&report, &bounds);

    assert_eq!(count(&page, "<svg class=\"plot\""), PLOTS, "one SVG per plot");
    for title in ["Session start", "Edit → applied", "throughput against latency", "1,000 sockets", "by phase"] {
        assert!(page.contains(title), "a plot titled {title:?}");
    }
    // Every figure has its row, and so does the bounded figure the run did not measure.
    for kpi in report.kpis.keys().chain(std::iter::once(&"delta_applied_fraction".to_string())) {
        assert!(page.contains(&format!("<td><code>{kpi}</code>")), "a row for {kpi}");
    }
    assert!(page.contains("<td class=\"num\">17.8 MiB</td>"), "values carry their unit");
    assert!(page.contains("class=\"bound missed target\""), "the missed RSS target is marked");
    assert!(page.contains("targets: 1 of 12 missed"), "the summary counts misses");
    assert!(page.contains("knee at 4,000/s offered"), "the knee is the first step that fell behind");
    assert!(page.contains("not measured"), "the unmeasured figure says so");
    assert!(page.contains("the legacy large start was left out"), "notes are shown");

    // Self-contained: nothing is fetched from anywhere.
    for reference in ["http://", "https://", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(reference), "the page refers to {reference:?}");
    }
}

#[test]
fn an_empty_series_says_not_measured() {
    let mut report = sample_report();
    report.mode = Mode::Remote;
    report.series.floor_notify_ms.clear();
    report.series.throughput.clear();
    report.series.start_phases_ms.clear();
    report.kpis.remove("floor_notify_p50_ms");
    report.notes.push("server-side floors are left out: remote mode".into());
    let page = html::render(&report, &[]);

    assert_eq!(count(&page, "<svg class=\"plot\""), PLOTS - 2, "an empty plot is not drawn");
    assert_eq!(count(&page, "class=\"plot-missing\""), 2, "a box stands in for each");
    assert!(page.contains("commit → LISTEN (the floor): not measured"), "an empty line of a plot says so");
    assert!(page.contains("server-side floors are left out: remote mode"));

    let nothing = Report { series: Series::default(), ..report };
    let page = html::render(&nothing, &[]);
    assert_eq!(count(&page, "<svg class=\"plot\""), 0);
    assert_eq!(count(&page, "<b>not measured</b>"), PLOTS);
}

#[test]
fn the_terminal_table_has_a_line_per_figure_and_shows_misses() {
    let report = sample_report();
    let bounds = sample_bounds(&report);
    let text = table::terminal(&report, &bounds);
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();

    // A header, a rule, then the measured figures and the one only a bound names.
    assert_eq!(lines.len(), 2 + report.kpis.len() + 1, "{text}");
    let rss = lines.iter().find(|l| l.starts_with("agent_hydrate_rss_mib")).expect("an RSS line");
    assert!(rss.contains("17.8 MiB") && rss.contains("≤ 16 MiB missed"), "{rss}");
    let start = lines.iter().find(|l| l.starts_with("start_small_p50_ms")).expect("a start line");
    assert!(start.contains("≤ 15000 ms met") && start.contains("≤ 50 ms met"), "{start}");
    let delivered = lines.iter().find(|l| l.starts_with("delivered_p50_ms")).expect("a delivered line");
    assert!(delivered.contains('×'), "the ratio to the floor: {delivered}");
    assert!(text.contains("not measured"), "delta_applied_fraction was not measured");
    // Aligned: the names start every line and the values (right-aligned) end where the rule's
    // second column ends.
    let rule: Vec<char> = lines[1].chars().collect();
    let value_end = rule.iter().enumerate().skip_while(|(_, c)| **c == '-').find(|(_, c)| **c == '-').map(|(i, _)| i);
    let value_end = value_end.and_then(|start| (start..rule.len()).find(|i| rule[*i] != '-')).expect("two columns");
    for line in &lines[2..] {
        let chars: Vec<char> = line.chars().collect();
        assert!(chars[value_end - 1] != ' ' && chars.get(value_end).is_none_or(|c| *c == ' '), "misaligned:\n{text}");
    }
}

/// Chromium's path, or `None` (with the reason printed) when the test should skip.
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("FSYNC_REQUIRE_BROWSER").is_none(),
            "FSYNC_REQUIRE_BROWSER is set but Chromium is not installed (apt-get install -y chromium)"
        );
        eprintln!(
            "skipped: Chromium is not installed (apt-get install -y chromium; FSYNC_REQUIRE_BROWSER=1 fails instead)"
        );
    }
    found
}

/// Runs headless Chromium with `args` on `page`, killed after [`BROWSER_TIMEOUT`]; returns what
/// it printed.
fn run_chromium(browser: &Path, page: &Path, args: &[&str], scratch: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir_in(scratch).expect("a profile directory");
    let stdout_path = profile.path().join("stdout");
    let stderr_path = profile.path().join("stderr");
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .arg("--virtual-time-budget=5000")
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        // Files, not pipes: a dumped DOM is larger than a pipe's buffer.
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        // Its own process group, so a timeout ends its helpers too.
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let deadline = fsync_testkit::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if fsync_testkit::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!(
                "chromium took over {BROWSER_TIMEOUT:?}; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    std::fs::read_to_string(&stdout_path).expect("read chromium's output")
}

/// What the page's script wrote into `<body data-plots-rendered>` once Chromium loaded it.
fn plots_rendered(browser: &Path, page: &Path, scratch: &Path) -> String {
    let dom = run_chromium(browser, page, &["--dump-dom"], scratch);
    let body = dom.find("<body").map(|at| &dom[at..]).unwrap_or_default();
    let body_tag = &body[..body.find('>').unwrap_or(body.len())];
    let value = body_tag.split("data-plots-rendered=\"").nth(1).and_then(|rest| rest.split('"').next());
    value.unwrap_or_else(|| panic!("the page's script did not run: {body_tag}")).to_owned()
}

/// A quick remote run at its thinnest: one sample per series (a CDF that is a single step), one
/// throughput step, no floors, no phases.
fn sparse_report() -> Report {
    let mut report = sample_report();
    report.mode = Mode::Remote;
    report.quick = true;
    let series = &mut report.series;
    for samples in series.start_ms.values_mut() {
        samples.truncate(1);
    }
    series.delta_ms = vec![20.0];
    series.delivered_ms = vec![5.0];
    series.floor_notify_ms.clear();
    series.fanout_ms = vec![50.0];
    series.throughput.truncate(1);
    series.start_phases_ms.clear();
    report.notes = vec!["server-side floors are left out: remote mode".into()];
    report
}

#[test]
fn the_page_renders_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    // Kept after the test: a person opens report.html or looks at report.png.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report_html");
    std::fs::create_dir_all(&dir).expect("create the page's directory");
    let page = dir.join("report.html");
    let report = sample_report();
    std::fs::write(&page, html::render(&report, &sample_bounds(&report))).expect("write the page");

    // Every plot drew marks with a size: none is blank or broken by NaN coordinates.
    assert_eq!(plots_rendered(&browser, &page, &dir), format!("{PLOTS}/{PLOTS}"));

    let png = dir.join("report.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(&browser, &page, &[&format!("--screenshot={}", png.display()), "--window-size=1400,2400"], &dir);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "a screenshot of a drawn page, not a blank one: {size} bytes at {}", png.display());

    // The thinnest run still draws every plot it has data for.
    let sparse = dir.join("report-sparse.html");
    let report = sparse_report();
    let text = html::render(&report, &sample_bounds(&report));
    let drawn = text.matches("<svg class=\"plot\"").count();
    std::fs::write(&sparse, text).expect("write the sparse page");
    assert_eq!(drawn, PLOTS - 1, "every plot but the phases");
    assert_eq!(plots_rendered(&browser, &sparse, &dir), format!("{drawn}/{drawn}"));
}

//! The load test's own tests: budgets and the gate, a whole (small) local run on the real stack,
//! and the HTML report in a real browser.

mod budgets;
mod live_gate;
mod local_run;
mod remote_run;
mod report_html;

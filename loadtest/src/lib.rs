//! `fsync-loadtest`: the plan's KPIs (preview start, edit → container) and the figures around
//! them, each measured beside what the machine itself can do (its floor) in the same run, written
//! as `report.json` and `report.html`, and a gate that fails a rollout on a missed budget.
//!
//! [`run::local`] starts the stack here ([`local`]) and measures every figure ([`measure`]) as
//! [`plan::Plan`] says; [`remote::run`] measures what a client sees of another deployment.
//! [`budgets`] holds a [`report::Report`] to `ci/kpi-budgets.toml`; [`html`] and [`table`]
//! show it.

pub mod budgets;
pub mod clock;
pub mod figures;
pub mod fleet;
pub mod html;
pub mod live;
pub mod local;
pub mod machine;
pub mod measure;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod report;
pub mod run;
pub mod seed;
pub mod stats;
pub mod table;

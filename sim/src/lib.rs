//! `fsync-sim`: the real server, agents and editors under turmoil's deterministic network and
//! clock, with faults drawn from a seed and the invariants of DESIGN §10 checked (issue 10).
//!
//! [`world::run`] runs one seed: one or two server hosts (the real router on the model and an
//! in-memory bucket, which outlive them), agent hosts (the real agent session code), editor
//! clients (the real client writing a conflicting workload over a few projects, with a viewer),
//! a driver that starts sessions and checks convergence at quiescence, and a watcher that checks
//! every agent's tree as it changes. `--legacy` runs the plan's old paths under the same
//! checkers. The same seed gives the same trace ([`trace::Trace::hash`]); [`html`] draws it.

pub mod check;
pub mod clock;
pub mod driver;
pub mod faults;
pub mod html;
pub mod launcher;
pub mod ledger;
pub mod legacy;
pub mod net;
pub mod people;
pub mod server;
pub mod trace;
pub mod watch;
pub mod workload;
pub mod world;

pub use world::{run, Config, Outcome};

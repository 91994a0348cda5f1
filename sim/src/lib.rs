//! `fsync-sim`: the real server, agents and editors under turmoil's deterministic network and
//! clock, with faults drawn from a seed and the invariants of DESIGN §10 checked (issue 10).
//!
//! [`world::run`] runs one seed: a server host (the real router on the model and an in-memory
//! bucket, which outlive it), agent hosts (the real agent session code), editor clients (the real
//! client writing a conflicting workload), and a driver that starts sessions and checks
//! convergence at quiescence. The same seed gives the same trace ([`trace::Trace::hash`]).

pub mod check;
pub mod clock;
pub mod launcher;
pub mod net;
pub mod trace;
pub mod workload;
pub mod world;

pub use world::{run, Config, Outcome};

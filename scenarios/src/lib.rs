//! `fsync-scenarios`: readable cases (`scenarios/cases/*.scenario`, the language in
//! `scenarios/README.md`) run on two stacks — the simulated world ([`sim`]: the real server on
//! the model, agents and people under turmoil) and the real stack ([`real`]: PostgreSQL, the
//! reference server, agents as processes, local storage, fault proxies) — each run writing a
//! transcript ([`transcript`]) that must be the same on both and match the committed one. A
//! third stack ([`containers`]: everything in Docker containers on a private network) runs every
//! case that does not reach into a launcher, against the same committed transcripts.
//!
//! A case is parsed ([`parse`]) into data ([`case`]); [`run::run`] takes it step by step
//! ([`steps`]) on any [`stack::Stack`], and [`settle`] waits for quiet and closes the transcript.

pub mod case;
pub mod check;
pub mod containers;
pub mod fixture;
pub mod hold;
pub mod observer;
pub mod parse;
pub mod real;
pub mod run;
pub mod settle;
pub mod sim;
pub mod stack;
pub mod steps;
pub mod transcript;

pub use case::Case;
pub use run::{Mismatch, Run};

//! The scenario suite: every case on the simulator and on the real stack, each transcript held
//! to its committed insta snapshot (`scenarios/transcripts/`), both stacks to each other, and
//! the case language's errors and expectations checked on their own.

mod cases;
mod language;

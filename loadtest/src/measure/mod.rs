//! One module per measurement; each takes the stack's API (and database) and returns samples.

pub mod delta;
pub mod floors;
pub mod pace;
pub mod realtime;
pub mod start;
pub mod stop;
pub mod throughput;

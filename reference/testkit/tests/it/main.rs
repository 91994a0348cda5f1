//! Integration tests of the test support itself, on real sockets (and, where it matters, the
//! machine's PostgreSQL and the real server).

mod containers;
mod proxy;
mod stack;

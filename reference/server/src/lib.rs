//! The fsync reference server: a stand-in for a Supabase project that serves the fsync SQL API
//! over PostgREST's HTTP surface, so `@supabase/supabase-js` and the fsync Rust client can use it.
//!
//! Start at [`app::serve`] (the server on a listener), [`pg::PgStore`] (how requests reach
//! PostgreSQL) and [`config::Settings`] (what the environment sets).

pub mod app;
pub mod auth;
pub mod bounds;
pub mod config;
pub mod http;
pub mod instance;
pub mod listener;
pub mod metrics;
pub mod orchestrator;
pub mod pg;
pub mod platform;
pub mod postgrest;
pub mod realtime;
pub mod snapshot;
pub mod state;
pub mod storage;

pub use app::{router, serve};
pub use instance::{Server, ServerBuilder};
pub use pg::PgStore;
pub use state::AppState;

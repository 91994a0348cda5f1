//! The plan's rollout flags (plan 0.4, DESIGN §3): their names, and how a value turns one on.
//! Each flips one old path to the new one and back; `docs/rollout.md` says in which order.

/// The frontend writes through the RPCs (on) or with table writes on `legacy_project_files` (off).
pub const USE_RPC: &str = "FSYNC_USE_RPC";
/// Agents hydrate from the snapshot (on) or file by file (off).
pub const USE_SNAPSHOT_HYDRATION: &str = "FSYNC_USE_SNAPSHOT_HYDRATION";
/// Clients may still broadcast edits themselves (on), or only the server authors events (off).
pub const KEEP_CLIENT_BROADCAST: &str = "FSYNC_KEEP_CLIENT_BROADCAST";

/// A flag's value: on for `1`, `true`, `yes`, `on` (any case, around spaces); off otherwise.
pub fn flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

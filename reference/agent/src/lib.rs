//! The container agent (DESIGN §9). So far: [`apply::ProjectDir`], which applies a project's
//! change batches to its directory — atomically per file, validated as a whole batch first.
//! Hydration from the snapshot, the realtime loop and the `fsync-agent` binary build on it.

pub mod apply;

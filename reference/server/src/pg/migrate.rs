//! The embedded migrations and the runner that applies them.
//!
//! Two sets: the shim, which gives plain PostgreSQL what a Supabase project provides, and the
//! portable migrations, which would apply unchanged to a real Supabase project. Every file is
//! idempotent on its own. The runner records what it applied (name and checksum) in
//! `fsync_migrations.applied`, skips what is unchanged, and re-applies a file whose checksum
//! changed (safe because the files are idempotent). An advisory lock lets several server
//! instances start against one database at once.

use anyhow::Context;
use fsync_protocol::hash::hex_sha256;
use tokio_postgres::Client;

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// `shim` or `portable`.
    pub set: &'static str,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($set:literal, $dir:literal, $name:literal) => {
        Migration { set: $set, name: $name, sql: include_str!(concat!("../../../supabase/", $dir, "/", $name)) }
    };
}

/// The shim: roles, `auth.*`, `realtime.*`, `storage.*` as Supabase defines them.
pub const SHIM: &[Migration] = &[migration!("shim", "shim", "0001_supabase_shim.sql")];

/// The portable migrations, in order.
pub const PORTABLE: &[Migration] = &[
    migration!("portable", "migrations", "0001_schema.sql"),
    migration!("portable", "migrations", "0002_access.sql"),
    migration!("portable", "migrations", "0003_rpcs.sql"),
    migration!("portable", "migrations", "0004_storage_realtime.sql"),
    migration!("portable", "migrations", "0005_binary_files.sql"),
    migration!("portable", "migrations", "0006_rate_limits.sql"),
    migration!("portable", "migrations", "0007_legacy_writes.sql"),
    migration!("portable", "migrations", "0008_sessions.sql"),
    migration!("portable", "migrations", "0009_snapshots.sql"),
    migration!("portable", "migrations", "0010_session_lifecycle.sql"),
];

/// Every migration for plain PostgreSQL: the shim first.
pub fn all() -> impl Iterator<Item = &'static Migration> {
    SHIM.iter().chain(PORTABLE)
}

const LOCK_KEY: i64 = 0x6673_796e_635f_6d67; // "fsync_mg"

/// Applies every pending migration; returns the names applied this time.
pub async fn migrate(client: &mut Client) -> anyhow::Result<Vec<String>> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await.context("take the migration lock")?;
    let result = apply_pending(client).await;
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    let applied = result?;
    unlock.context("release the migration lock")?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client) -> anyhow::Result<Vec<String>> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS fsync_migrations;
             CREATE TABLE IF NOT EXISTS fsync_migrations.applied (
               name text PRIMARY KEY,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .context("create the migrations table")?;
    let mut applied = Vec::new();
    for migration in all() {
        let key = format!("{}/{}", migration.set, migration.name);
        let checksum = hex_sha256(migration.sql.as_bytes());
        let recorded: Option<String> = client
            .query_opt("SELECT checksum FROM fsync_migrations.applied WHERE name = $1", &[&key])
            .await
            .context("read the migrations table")?
            .map(|row| row.get(0));
        if recorded.as_deref() == Some(checksum.as_str()) {
            continue;
        }
        let tx = client.transaction().await.context("begin a migration")?;
        tx.batch_execute(migration.sql).await.with_context(|| format!("apply migration {key}"))?;
        tx.execute(
            "INSERT INTO fsync_migrations.applied (name, checksum) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
            &[&key, &checksum],
        )
        .await
        .context("record a migration")?;
        tx.commit().await.with_context(|| format!("commit migration {key}"))?;
        applied.push(key);
    }
    Ok(applied)
}

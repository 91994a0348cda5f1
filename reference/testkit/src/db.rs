//! A fresh database per test.

use anyhow::Context;
use fsync_protocol::hash::hex_sha256;
use fsync_reference::pg::migrate;
use tokio_postgres::{Client, NoTls};

/// The superuser URL tests connect with to create and drop databases.
pub fn admin_url() -> String {
    std::env::var("FSYNC_TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test and is dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// The superuser URL of the server it is on.
    admin: String,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn migrated() -> anyhow::Result<TestDb> {
        TestDb::migrated_on(&admin_url()).await
    }

    /// A fresh database with every migration applied, on the server of superuser URL `admin`
    /// (another server than the tests' own: PostgreSQL in a container).
    pub async fn migrated_on(admin: &str) -> anyhow::Result<TestDb> {
        let template = ensure_template(admin).await?;
        TestDb::create(admin, Some(&template)).await
    }

    /// A fresh, empty database.
    pub async fn empty() -> anyhow::Result<TestDb> {
        TestDb::create(&admin_url(), None).await
    }

    async fn create(admin_url: &str, template: Option<&str>) -> anyhow::Result<TestDb> {
        let name = format!("fsync_test_{}", crate::new_id().simple());
        let admin = connect(admin_url).await?;
        let statement = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        admin.batch_execute(&statement).await.with_context(|| format!("create test database {name}"))?;
        Ok(TestDb { url: url_for(admin_url, &name), name, admin: admin_url.to_owned() })
    }

    /// A superuser connection to this database (bypasses RLS: use it to seed and inspect).
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin.clone());
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = connect(&admin_url).await {
                    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// `admin` with its database replaced by `name`.
fn url_for(admin: &str, name: &str) -> String {
    match admin.rfind('/') {
        Some(slash) if admin[..slash].contains("://") && slash > admin.find("://").unwrap_or(0) + 2 => {
            let (base, rest) = admin.split_at(slash);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{name}{query}")
        }
        _ => format!("{admin}/{name}"),
    }
}

pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.with_context(|| format!("connect to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Builds (once per migration checksum, under an advisory lock) a template database with every
/// migration applied on the server of `admin_url`, and returns its name.
async fn ensure_template(admin_url: &str) -> anyhow::Result<String> {
    let all: String = migrate::all().map(|m| m.sql).collect();
    let name = format!("fsync_tmpl_{}", &hex_sha256(all.as_bytes())[..16]);
    let admin = connect(admin_url).await?;
    admin.execute("SELECT pg_advisory_lock(7340123)", &[]).await?;
    let result = async {
        let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
        if !exists {
            // Templates of other migration versions are left alone: another checkout (a
            // mutation-testing copy, another branch) may be cloning them right now.
            let building = format!("{name}_building");
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)")).await?;
            admin.batch_execute(&format!("CREATE DATABASE \"{building}\"")).await?;
            {
                let mut client = connect(&url_for(admin_url, &building)).await?;
                migrate::migrate(&mut client).await.context("migrate the template database")?;
            }
            // The connection above must be gone before the rename.
            admin.batch_execute(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"")).await?;
        }
        anyhow::Ok(())
    }
    .await;
    admin.execute("SELECT pg_advisory_unlock(7340123)", &[]).await?;
    result?;
    Ok(name)
}

//! Finding the database: `DATABASE_URL` when set (the database is created if missing), else the
//! machine's server on 127.0.0.1:5432, else a private cluster under `./.fsync/` started from the
//! installed PostgreSQL binaries.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// The machine's PostgreSQL, probed when `DATABASE_URL` is unset.
pub const MACHINE_ADDR: &str = "127.0.0.1:5432";
/// The database used on the machine's server or the private cluster.
pub const DEFAULT_DATABASE: &str = "fsync";

/// Where the database came from.
#[derive(Debug)]
pub enum Source {
    /// `DATABASE_URL`.
    Url,
    /// The server found on 127.0.0.1:5432.
    Machine,
    /// A cluster this process started.
    Private(PrivateCluster),
}

/// The database to use and where it came from.
#[derive(Debug)]
pub struct Database {
    pub url: String,
    pub source: Source,
}

/// Resolves the database as described in the module docs and makes sure it exists.
pub async fn resolve(database_url: Option<String>, state_dir: &Path) -> anyhow::Result<Database> {
    let database = match database_url {
        Some(url) => Database { url, source: Source::Url },
        None => {
            let reachable =
                tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(MACHINE_ADDR))
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false);
            if reachable {
                Database {
                    url: format!("postgres://postgres@{MACHINE_ADDR}/{DEFAULT_DATABASE}"),
                    source: Source::Machine,
                }
            } else {
                let cluster = PrivateCluster::start(&state_dir.join("pg")).context("start a private PostgreSQL")?;
                Database { url: cluster.url(DEFAULT_DATABASE), source: Source::Private(cluster) }
            }
        }
    };
    create_database_if_missing(&database.url).await?;
    Ok(database)
}

/// Creates the database named in `url` when it does not exist, connecting to `postgres` on the
/// same server to do it.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url.parse().with_context(|| format!("parse database URL {}", redact(url)))?;
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) =
        admin.connect(NoTls).await.with_context(|| format!("connect to PostgreSQL at {}", redact(url)))?;
    let driver = tokio::spawn(connection);
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if !exists {
        let statement = format!("CREATE DATABASE {}", super::sql::ident(&name));
        if let Err(e) = client.batch_execute(&statement).await {
            // Another instance may have created it meanwhile: PostgreSQL says so as a duplicate
            // database, or, when both creations ran at once, as a unique violation on the catalog.
            let raced = [SqlState::DUPLICATE_DATABASE, SqlState::UNIQUE_VIOLATION];
            if !e.code().is_some_and(|code| raced.contains(code)) {
                return Err(e).with_context(|| format!("create database {name}"));
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// `url` with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A PostgreSQL cluster in a directory of ours, listening on 127.0.0.1 on a free port, stopped
/// when dropped.
#[derive(Debug)]
pub struct PrivateCluster {
    pub data_dir: PathBuf,
    pub port: u16,
    bin_dir: PathBuf,
    run_as: Option<String>,
}

impl PrivateCluster {
    /// Initializes `data_dir` if needed and starts the server.
    pub fn start(data_dir: &Path) -> anyhow::Result<PrivateCluster> {
        let bin_dir = find_bin_dir()?;
        // initdb and postgres refuse to run as root; run them as the `postgres` system user.
        let run_as = if is_root() { Some("postgres".to_owned()) } else { None };
        std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        if let Some(user) = &run_as {
            run(Command::new("chown").arg("-R").arg(user).arg(&data_dir), "chown the private cluster")?;
        }
        let port = free_port()?;
        let cluster = PrivateCluster { data_dir, port, bin_dir, run_as };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            let initdb = cluster.bin_dir.join("initdb");
            let mut cmd = cluster.command(&initdb);
            cmd.args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "-D"])
                .arg(&cluster.data_dir);
            run(&mut cmd, "initdb")?;
        }
        let pg_ctl = cluster.bin_dir.join("pg_ctl");
        let mut cmd = cluster.command(&pg_ctl);
        cmd.arg("-D")
            .arg(&cluster.data_dir)
            .arg("-l")
            .arg(cluster.data_dir.join("server.log"))
            .arg("-o")
            .arg(format!("-p {} -c listen_addresses=127.0.0.1 -k {}", cluster.port, cluster.data_dir.display()))
            .args(["-w", "-t", "60", "start"]);
        run(&mut cmd, "pg_ctl start")?;
        Ok(cluster)
    }

    /// A URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn command(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let mut cmd = self.command(&pg_ctl);
        cmd.arg("-D").arg(&self.data_dir).args(["-m", "fast", "-w", "stop"]);
        let _ = cmd.output();
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = cmd.output().with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The directory of the newest installed PostgreSQL's binaries.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL binaries found (pg_config, /usr/lib/postgresql/*/bin)"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}

//! A private PostgreSQL cluster on loopback (Debian's `postgresql` binaries), one database per
//! reservation system, and SQL through Debian's `psql` client.
//!
//! ```text
//!  <tmp>/reservation-pg-XXXX/           owned by the `postgres` user when the test runs as root
//!     data/      initdb -U postgres --auth=trust (UTF8, C.UTF-8)
//!     sock/      unix_socket_directories (nothing else uses it)
//!     postgres.log
//!  postgres -D data -h 127.0.0.1 -p <free port> -k sock -c fsync=off ...
//!     run as `postgres` through `setpriv` when uid is 0 (PostgreSQL refuses root)
//!  psql -h 127.0.0.1 -p <port> -U postgres -d <db> -X -q -At -F US -R RS -v ON_ERROR_STOP=1
//! ```
//!
//! Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): the cluster is thrown
//! away with the test run. Stopped on drop (SIGTERM: fast shutdown, then SIGKILL), and by the
//! watchdog if the test binary dies. `Postgres::shared()` is one cluster per test binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::jars::Requirements;
use crate::process::{Service, log_tail, temp_dir};

/// How long a new cluster may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one `psql` call.
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Field separator of `psql -At` output (ASCII unit separator).
const FS: char = '\u{1f}';
/// Record separator (ASCII record separator): values may hold newlines.
const RS: char = '\u{1e}';
/// The superuser `initdb` creates and every client connects as (trust authentication, loopback).
pub const SUPERUSER: &str = "postgres";

/// A running private PostgreSQL cluster.
pub struct Postgres {
    server: Service,
    port: u16,
    bin: PathBuf,
    // Last: removed after the server is gone.
    dir: tempfile::TempDir,
}

static SHARED: tokio::sync::OnceCell<Postgres> = tokio::sync::OnceCell::const_new();

impl Postgres {
    /// The cluster shared by every reservation system of this test binary (one database each),
    /// started on first use; ended by its watchdog when the binary exits.
    pub async fn shared(req: &Requirements) -> Result<&'static Postgres> {
        SHARED.get_or_try_init(|| Postgres::start(req)).await
    }

    /// initdb into a fresh temp dir and start the server on a free loopback port; returns once
    /// it accepts connections (bounded).
    pub async fn start(req: &Requirements) -> Result<Postgres> {
        let bin = req.pg_bin.clone();
        let dir = temp_dir("reservation-pg")?;
        let owner = run_as()?;
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).map_err(|e| Error::io("creating the socket dir", e))?;
        if let Some((uid, gid)) = owner {
            for p in [dir.path(), sock.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| Error::io(format!("chown {} to postgres", p.display()), e))?;
            }
        }
        let log = dir.path().join("postgres.log");
        let mut initdb = as_owner(owner, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"])
            .arg("--no-sync")
            .env("TZ", "UTC")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        let out = initdb
            .output()
            .map_err(|e| Error::io(format!("running {}/initdb", bin.display()), e))?;
        if !out.status.success() {
            return Err(Error::Unexpected(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = envoy_harness::free_port()?;
        let mut cmd = as_owner(owner, &bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&sock)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "timezone=UTC",
                "-c",
                "log_timezone=UTC",
            ])
            .env("TZ", "UTC")
            .current_dir(dir.path());
        let server = Service::spawn("postgres", cmd, &log, dir.path(), Duration::from_secs(10))?;
        let mut pg = Postgres {
            server,
            port,
            bin,
            dir,
        };
        pg.wait_ready().await?;
        Ok(pg)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            self.server.check_alive()?;
            if self.query("postgres", "SELECT 1").await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!(
                        "PostgreSQL on 127.0.0.1:{}; log tail:\n{}",
                        self.port,
                        self.server.log_tail()
                    ),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `jdbc:postgresql://127.0.0.1:<port>/<db>` (what Spring's `spring.datasource.url` and the
    /// processor's `DB_URL` take).
    pub fn jdbc_url(&self, db: &str) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{db}", self.port)
    }

    /// Its temp dir (data, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log's last lines.
    pub fn log_tail(&self) -> String {
        log_tail(self.server.log_path())
    }

    /// Creates database `name` (UTF8).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.execute(
            "postgres",
            &format!("CREATE DATABASE {} ENCODING 'UTF8'", ident(name)),
        )
        .await
    }

    /// Runs `sql` (one or more statements) on `db`; fails with psql's message.
    pub async fn execute(&self, db: &str, sql: &str) -> Result<()> {
        self.query(db, sql).await.map(|_| ())
    }

    /// Runs `sql` on `db` and returns the rows of its last statement, every value as text
    /// (`NULL` as the empty string; booleans `t`/`f`).
    pub async fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut cmd = tokio::process::Command::new(self.bin.join("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", db, "-X", "-q", "-At"])
            .arg("-F")
            .arg(FS.to_string())
            .arg("-R")
            .arg(RS.to_string())
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGTZ", "UTC")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(PSQL_TIMEOUT, cmd.output())
            .await
            .map_err(|_| Error::Timeout {
                what: format!("psql on {db}: {sql}"),
                after: PSQL_TIMEOUT,
            })?
            .map_err(|e| Error::io("running psql", e))?;
        if !out.status.success() {
            return Err(Error::Sql {
                db: db.to_string(),
                sql: sql.to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(parse_rows(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Rows of `psql -At -F US -R RS` output.
pub fn parse_rows(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split(RS)
        .map(|r| r.split(FS).map(str::to_string).collect())
        .collect()
}

/// `s` as an SQL string literal (`'` doubled; standard_conforming_strings is on by default).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a quoted SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The (uid, gid) to run PostgreSQL as: the `postgres` system user when this process is root
/// (PostgreSQL refuses to run as root), else `None` (run as ourselves).
fn run_as() -> Result<Option<(u32, u32)>> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("reading /proc/self/status", e))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok());
    if euid != Some(0) {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("reading /etc/passwd", e))?;
    passwd_entry(&passwd, SUPERUSER).map(Some).ok_or_else(|| {
        Error::Missing(
            "running as root, and there is no `postgres` system user to run PostgreSQL as \
             (Debian's postgresql package creates it)"
                .into(),
        )
    })
}

/// (uid, gid) of `user` in `/etc/passwd` text.
pub fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// A command running `bin` as `owner` (`setpriv`: it execs, so the child's pid is the server's),
/// or as ourselves.
fn as_owner(owner: Option<(u32, u32)>, bin: &Path) -> Command {
    match owner {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(bin)
                .env("HOME", "/tmp")
                .env("USER", SUPERUSER)
                .env("LOGNAME", SUPERUSER);
            c
        }
        None => Command::new(bin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_newlines_and_empty_values() {
        let out = format!("1{FS}a\nb{RS}2{FS}{RS}3{FS}c\n");
        assert_eq!(
            parse_rows(&out),
            vec![
                vec!["1".to_string(), "a\nb".to_string()],
                vec!["2".to_string(), String::new()],
                vec!["3".to_string(), "c".to_string()],
            ]
        );
        assert!(parse_rows("").is_empty());
        assert!(parse_rows("\n").is_empty());
    }

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(p, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(p, "nobody"), None);
    }
}

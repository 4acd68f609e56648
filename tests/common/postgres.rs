//! A private PostgreSQL cluster per test (Debian's `postgresql`): `initdb` into a fresh
//! directory, `postgres` on a loopback port of the test's namespace (trust authentication, no
//! fsync), stopped and started again at will. As root the server runs as the `postgres` user
//! (it refuses root), through `runuser`. A missing PostgreSQL fails the test.
// Only the CDR database test uses it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::{is_root, Net};
use super::process::{poll_until, ProcGuard, SpawnGroup as _};

/// A running (or stopped) cluster; its server is killed on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    log: PathBuf,
    server: Option<ProcGuard>,
}

/// The newest /usr/lib/postgresql/N/bin.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed: run scripts/install-deps.sh (Debian package postgresql)",
        )
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let b = e.path().join("bin");
            b.join("initdb").exists().then_some((v, b))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, b)| b)
        .expect("no /usr/lib/postgresql/*/bin/initdb: run scripts/install-deps.sh")
}

/// `cmd` as the user that owns the cluster (`postgres` when we are root).
fn as_owner(program: &std::path::Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// A new cluster listening on 127.0.0.1:`port`, started and accepting connections.
    pub fn start(net: &Net, port: u16) -> Postgres {
        let bin = bin_dir();
        // Outside the test's directory: every parent must be searchable by `postgres`.
        let data =
            std::env::temp_dir().join(format!("trunkline-pg-{}-{}", std::process::id(), port));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("mkdir pgdata");
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .expect("chown");
            assert!(st.success(), "chown the cluster directory to postgres");
        }
        let out = as_owner(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "trunkline",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            bin,
            data,
            port,
            log: net.dir.join("postgres.log"),
            server: None,
        };
        pg.resume();
        pg
    }

    /// The connection string trunkline is given.
    pub fn conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=trunkline dbname=postgres connect_timeout=2",
            self.port
        )
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("postgres log");
        let server = as_owner(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&self.data)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn_group()
            .expect("start postgres");
        self.server = Some(server);
        let ready = poll_until(
            Instant::now() + Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                Command::new(self.bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
        assert!(
            ready,
            "postgres did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.signal_group(libc::SIGINT);
            if s.wait_timeout(Duration::from_secs(10)).is_none() {
                s.kill_group();
            }
        }
    }

    /// One SQL query through psql: its rows, unaligned, `|`-separated.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// [`Postgres::query`], the error (psql's stderr) returned.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "trunkline", "-d", "postgres", "-Atc", sql])
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

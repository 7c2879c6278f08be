//! A private PostgreSQL cluster for one test.
//!
//! `initdb` runs once per machine into a template directory (guarded by a file lock, since
//! nextest runs every test in its own process); each cluster is a copy of the template,
//! started with `pg_ctl` on a free loopback port and stopped and deleted on drop. PostgreSQL
//! refuses to run as root, so as root every command runs as the `postgres` system user.
//!
//! A missing PostgreSQL is a failure, never a silent skip: CI must exercise both stores.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// A running private cluster; stopped and removed on drop.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    port: u16,
    bin: PathBuf,
}

impl PgCluster {
    /// Starts a cluster for tests (no fsync: tests never crash the machine), panicking with a
    /// remedy when PostgreSQL cannot be started.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a cluster that is as durable as a production one (`fsync`, synchronous commit
    /// and full-page writes on, as `initdb` leaves them), for benchmarks.
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL 15 binaries (initdb, pg_ctl) were not found on PATH or under \
                 /usr/lib/postgresql/*/bin; install them (Debian: postgresql-15) to run the \
                 PostgreSQL half of the test suite"
            )
        });
        let template = ensure_template(&bin);
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(&bin, &template, durable) {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a private PostgreSQL: {last_error}");
    }

    fn try_start(bin: &Path, template: &Path, durable: bool) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("creddy-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        give_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        run_as_postgres(Command::new("cp").arg("-a").arg(template).arg(&data))?;
        let port = free_port()?;
        let unsafe_speed = if durable {
            ""
        } else {
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} {unsafe_speed} -c max_connections=50",
            dir.path().display()
        );
        run_as_postgres(
            Command::new(bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(options)
                .arg("-l")
                .arg(dir.path().join("log"))
                .args(["-w", "-t", "30", "start"]),
        )
        .map_err(|e| {
            let log = fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            format!("{e}\n{log}")
        })?;
        Ok(Self {
            dir,
            port,
            bin: bin.to_owned(),
        })
    }

    /// A URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = run_as_postgres(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"]),
        );
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a command, as the `postgres` user when we are root.
fn run_as_postgres(cmd: &mut Command) -> Result<Output, String> {
    let mut cmd = if is_root() {
        let mut wrapped = Command::new("runuser");
        wrapped
            .args(["-u", "postgres", "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        wrapped
    } else {
        std::mem::replace(cmd, Command::new("true"))
    };
    let output = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn give_to_postgres(path: &Path) -> Result<(), String> {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("chown postgres {} failed", path.display()));
        }
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versioned.sort();
    versioned.reverse();
    on_path
        .into_iter()
        .chain(versioned)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .map(|dir| {
            fs::canonicalize(dir.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(dir)
        })
}

/// The directory holding an initialised cluster to copy, made once per machine and user.
fn ensure_template(bin: &Path) -> PathBuf {
    let root = std::env::temp_dir().join("creddy-testkit-pg-template");
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let lock = File::create(root.join("lock")).unwrap_or_else(|e| panic!("template lock: {e}"));
    lock.lock().unwrap_or_else(|e| panic!("template lock: {e}"));
    let version = fs::read_to_string(bin.join("../share/version")).unwrap_or_default();
    let template = root.join(format!(
        "data-{}",
        bin.display().to_string().replace('/', "_") + version.trim()
    ));
    if !template.join("PG_VERSION").is_file() {
        let _ = fs::remove_dir_all(&template);
        give_to_postgres(&root).expect("the directory is given to the postgres user");
        run_as_postgres(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&template)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        )
        .unwrap_or_else(|e| panic!("initdb failed: {e}"));
    }
    drop(lock);
    template
}

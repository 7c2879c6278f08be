//! creddy servers for tests.
//!
//! [`TestServer`] runs the server in this process on `127.0.0.1:0` with a [`ManualClock`], on
//! a fresh data directory and either store, so tests can move time and drive background
//! tasks. [`ServerProcess`] runs the real `creddy server` binary and captures its log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use creddy_core::ManualClock;
use creddy_server::{Server, Settings, StartError};
use tempfile::TempDir;

use crate::postgres::PgCluster;
use crate::store::Dialect;

/// An in-process server with a manual clock.
#[derive(Debug)]
pub struct TestServer {
    server: Option<Server>,
    /// The clock the server reads; advance it instead of sleeping.
    pub clock: Arc<ManualClock>,
    /// The settings the server was started with (reuse them to restart).
    pub settings: Settings,
    dir: TempDir,
    cluster: Option<Arc<PgCluster>>,
}

impl TestServer {
    /// Starts a server on a fresh data directory with the given store.
    pub async fn start(dialect: Dialect) -> Self {
        Self::start_with(dialect, |_| {}).await
    }

    /// Starts a server after `adjust` has changed the default test settings.
    pub async fn start_with(dialect: Dialect, adjust: impl FnOnce(&mut Settings)) -> Self {
        // The server's log on the test's stderr, which the runner shows for a failed test
        // (a refusal such as "plugin is not available" has its cause there).
        creddy_server::logging::init(creddy_server::LogFormat::Text, false);
        let dir = TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cluster = match dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(Arc::new(
                tokio::task::spawn_blocking(PgCluster::start)
                    .await
                    .expect("the blocking task ends"),
            )),
        };
        let mut settings = Settings::for_data_dir(&dir.path().join("data"));
        settings.database_url = cluster.as_ref().map(|c| c.url());
        settings.plugin_dir = dir.path().join("plugins");
        settings.allow_unsigned_plugins = true;
        settings.plugin_timeout_cap = Some(Duration::from_secs(10));
        adjust(&mut settings);
        let clock = Arc::new(ManualClock::starting_now());
        let server = Server::start(settings.clone(), clock.clone())
            .await
            .unwrap_or_else(|e| panic!("server start: {e}"));
        Self {
            server: Some(server),
            clock,
            settings,
            dir,
            cluster,
        }
    }

    fn running(&self) -> &Server {
        self.server
            .as_ref()
            .unwrap_or_else(|| panic!("the server is stopped"))
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.running().addr())
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.running()
    }

    /// The local admin token the server wrote into its data directory.
    pub fn admin_token(&self) -> String {
        let path = self.settings.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// The audit trail, oldest event first.
    pub async fn audit_events(&self) -> Vec<creddy_store::StoredEvent> {
        let mut events = self
            .running()
            .state()
            .store()
            .recent_events(10_000)
            .await
            .unwrap_or_else(|e| panic!("reading the audit trail: {e}"));
        events.reverse();
        events
    }

    /// Installs the scriptable test plugin as `name` in the server's plugin directory.
    pub fn install_test_plugin(&self, name: &str) -> crate::plugins::Installed {
        crate::plugins::install_as(
            &crate::plugins::test_plugin_binary(),
            &self.settings.plugin_dir,
            name,
        )
    }

    /// Runs raw SQL against the server's database, behind its back (tampering tests).
    pub async fn execute_raw(&self, sql: &str) {
        let location = self.server().state().store().location().clone();
        crate::store::execute_raw(&location, sql).await;
    }

    /// The first column of the first row of raw SQL against the server's database, as text
    /// (reading what the API does not show; `None` when no row matched).
    pub async fn query_raw_text(&self, sql: &str) -> Option<String> {
        let location = self.server().state().store().location().clone();
        crate::store::query_raw_text(&location, sql).await
    }

    /// Makes every audit insert of this server's database fail (fail-closed tests).
    pub async fn break_audit(&self) {
        let location = self.server().state().store().location().clone();
        crate::store::execute_raw(&location, crate::store::break_audit_sql(&location)).await;
    }

    /// A scratch directory that lives as long as the server.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Stops and starts again on the same data directory and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(
            Server::start(self.settings.clone(), self.clock.clone())
                .await
                .unwrap_or_else(|e| panic!("server restart: {e}")),
        );
    }

    /// Tries to start a second server with the same settings (which must fail while this one
    /// runs on the same data directory).
    pub async fn start_twin(&self) -> Result<Server, StartError> {
        Server::start(self.settings.clone(), self.clock.clone()).await
    }

    /// The PostgreSQL cluster behind the server, if any.
    pub fn postgres(&self) -> Option<&PgCluster> {
        self.cluster.as_deref()
    }
}

/// The real `creddy server` binary, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    /// The threads copying stdout and stderr into the logs (done at end of output).
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// How long a starting server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl ServerProcess {
    /// Starts `bin server --listen 127.0.0.1:0 ARGS…` in a cleared environment (only `PATH`
    /// plus `envs`) and waits for its "listening on" line; stdout and stderr are kept.
    pub fn start(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out_sink = stdout.clone();
        let out = child.stdout.take().ok_or("no stdout")?;
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut lines) = out_sink.lock() {
                    lines.push(line);
                }
            }
        });
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = mpsc::channel();
        let sink = log.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = listening_addr(&line);
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
                // Announce only after the line is in the log, so callers see it there.
                if let Some(addr) = addr {
                    let _ = found.send(addr);
                }
            }
        });
        match listening.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(Self {
                child,
                addr,
                log,
                stdout,
                readers: vec![stdout_reader, stderr_reader],
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let lines = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                Err(format!("server did not start ({status}):\n{lines}"))
            }
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Everything the server has written to stdout so far (only `server --dev` does).
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Sends a signal by name (`HUP`, …) without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) and waits for the exit status code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        let code = self.child.wait().ok().and_then(|s| s.code());
        // The exit does not wait for the last lines to reach the log: wait for the readers
        // to see the end of the output (bounded, in case a child process still holds it).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self
            .readers
            .iter()
            .all(std::thread::JoinHandle::is_finished)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        code
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    let end = rest.find([',', ' ', '"']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The Daytona stand-in binary, killed on drop.
#[derive(Debug)]
pub struct StandinProcess {
    child: Child,
    /// The API base URL, e.g. `http://127.0.0.1:40000/api`.
    pub api_url: String,
}

impl StandinProcess {
    /// Starts `daytona-standin` on a free loopback port, keeping state in `state_file`.
    pub fn start(binary: &Path, state_file: &Path) -> Self {
        Self::spawn(Command::new(binary).arg("--state").arg(state_file))
    }

    /// Starts `daytona-standin` on a free loopback port with its state in memory only (for
    /// benchmarks: saving the whole state at every change grows with the keys it holds).
    pub fn start_in_memory(binary: &Path) -> Self {
        Self::spawn(&mut Command::new(binary))
    }

    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the Daytona stand-in: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the server prints its listening line");
        let api_url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected stand-in output: {first}"))
            .to_owned();
        Self { child, api_url }
    }

    /// The base URL of the stand-in's control routes.
    pub fn control_url(&self) -> String {
        self.api_url.trim_end_matches("/api").to_owned()
    }
}

/// The Daytona stand-in's state (`GET /_standin/state`: its keys, sandboxes and the names of
/// the keys it deleted), asked of the stand-in at `control_url`.
pub async fn standin_state(
    http: &reqwest::Client,
    control_url: &str,
) -> Result<serde_json::Value, String> {
    http.get(format!("{control_url}/_standin/state"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

impl Drop for StandinProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

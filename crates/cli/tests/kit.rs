//! Running the real binary: a server process on a fresh data directory (SQLite or a private
//! PostgreSQL) and CLI invocations in a cleared environment with their own `HOME`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use creddy_testkit::postgres::PgCluster;
use creddy_testkit::server::ServerProcess;
use creddy_testkit::store::Dialect;
use tempfile::TempDir;

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_creddy"))
}

/// What a CLI run produced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The end of the server's log when the command ran against a [`Site`], shown when an
    /// assertion fails (a refusal such as "plugin is not available" has its cause there).
    pub server_log: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            server_log: String::new(),
        }
    }
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}{}",
            self.stdout,
            self.stderr,
            self.server_log
        );
        &self.stdout
    }

    /// Asserts the exit code and that stderr contains `text`.
    pub fn fails(&self, code: i32, text: &str) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}{}",
            self.stdout,
            self.stderr,
            self.server_log
        );
        assert!(
            self.stderr.contains(text),
            "expected {text:?} in stderr:\n{}",
            self.stderr
        );
    }
}

/// Runs `creddy ARGS…` with `HOME` at `home`, only `PATH` inherited, plus `envs`.
pub fn creddy(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    run_binary(bin(), home, args, envs)
}

/// Runs a `creddy` binary (this build's, or an unpacked release's) as [`creddy`] does.
pub fn run_binary(binary: &Path, home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running creddy: {e}"))
        .into()
}

/// A server process with its home, data directory and (for PostgreSQL) cluster.
pub struct Site {
    pub server: ServerProcess,
    pub home: TempDir,
    pub data_dir: PathBuf,
    _cluster: Option<PgCluster>,
}

impl Site {
    /// Starts a server on a fresh data directory with the given store.
    pub async fn start(dialect: Dialect) -> Self {
        tokio::task::spawn_blocking(move || Self::start_blocking(dialect, &[]))
            .await
            .expect("the blocking task ends")
    }

    /// Starts a server with extra arguments.
    pub fn start_blocking(dialect: Dialect, extra: &[&str]) -> Self {
        Self::start_with_env(dialect, extra, &[])
    }

    /// Starts a server with extra arguments and environment.
    pub fn start_with_env(dialect: Dialect, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::launch(dialect, extra, "", envs)
    }

    /// Starts a server whose configuration file also holds `config` (TOML), with extra
    /// environment.
    pub fn start_with_config(dialect: Dialect, config: &str, envs: &[(&str, &str)]) -> Self {
        Self::launch(dialect, &[], config, envs)
    }

    fn launch(dialect: Dialect, extra: &[&str], config_text: &str, envs: &[(&str, &str)]) -> Self {
        let home = TempDir::new().expect("TempDir is created");
        let data_dir = home.path().join("data");
        let cluster = (dialect == Dialect::Postgres).then(PgCluster::start);
        // Explicit config and plugin directory: as root the defaults are system paths.
        let config = home.path().join("creddy.toml");
        std::fs::write(
            &config,
            format!("plugins = {{ allow_unsigned = true }}\n{config_text}"),
        )
        .expect("the file is written");
        let mut args = vec![
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--config".to_owned(),
            config.display().to_string(),
            "--plugin-dir".to_owned(),
            home.path().join("plugins").display().to_string(),
        ];
        if let Some(c) = &cluster {
            args.extend(["--database-url".to_owned(), c.url()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let home_text = home.path().display().to_string();
        let mut all_envs = vec![("HOME", home_text.as_str())];
        all_envs.extend_from_slice(envs);
        let server = ServerProcess::start(bin(), &args, &all_envs).expect("the server starts");
        Self {
            server,
            home,
            data_dir,
            _cluster: cluster,
        }
    }

    /// Runs an admin command against this server, finding the admin token through
    /// `--data-dir` as an operator on the same machine would.
    pub fn admin(&self, args: &[&str]) -> Run {
        let url = self.server.url();
        let dir = self.data_dir.display().to_string();
        let mut full = vec!["--server", &url, "--data-dir", &dir];
        full.extend_from_slice(args);
        self.with_log(creddy(self.home.path(), &full, &[]))
    }

    /// `run` with the end of the server's log.
    fn with_log(&self, mut run: Run) -> Run {
        let log = self.server.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        run.server_log = format!("\nserver log (end):\n{tail}");
        run
    }

    /// Runs an agent command with the given vend token.
    pub fn agent(&self, token: &str, args: &[&str]) -> Run {
        let url = self.server.url();
        self.with_log(creddy(
            self.home.path(),
            args,
            &[("CREDDY_URL", &url), ("CREDDY_TOKEN", token)],
        ))
    }

    /// Installs the scriptable test plugin as `name`.
    pub fn install_test_plugin(&self, name: &str) {
        creddy_testkit::plugins::install_as(
            &creddy_testkit::plugins::test_plugin_binary(),
            &self.home.path().join("plugins"),
            name,
        );
    }

    /// The fake upstream of the test plugin.
    pub fn upstream(&self) -> PathBuf {
        self.home.path().join("upstream")
    }

    /// The admin token the server wrote.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

/// The value of `export NAME=value` in a command's output.
pub fn exported(stdout: &str, name: &str) -> String {
    let prefix = format!("export {name}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{stdout}"))
        .to_owned()
}

/// A blocking HTTP client (rustls with the ring provider, as the binaries use).
pub fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("the HTTP client is built")
}

/// Polls `ok` until it holds, for at most a minute: waiting for a condition, never for time.
pub fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The clock file of server processes (`CREDDY_TEST_CLOCK_FILE`): system time plus the
/// offset it holds.
pub struct ClockFile(pub PathBuf);

impl ClockFile {
    /// A clock file at `path`, starting at offset 0.
    pub fn new(path: PathBuf) -> Self {
        std::fs::write(&path, "0").expect("the file is written");
        Self(path)
    }

    /// Moves every server reading this file forward.
    pub fn advance(&self, seconds: i64) {
        let now: i64 = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        std::fs::write(&self.0, (now + seconds * 1000).to_string()).expect("the file is written");
    }

    /// The path, for the environment.
    pub fn env_value(&self) -> String {
        self.0.display().to_string()
    }
}

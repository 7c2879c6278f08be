//! `creddy server`: run the server in the foreground until SIGINT or SIGTERM.

use std::sync::Arc;

use creddy_core::{Clock, SystemClock, Timestamp};
use creddy_server::config::Environment;
use creddy_server::{Server, ServerArgs, Settings, logging};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Global, ServerCmd};
use crate::failure::{EXIT_OTHER, Failure, Result};

/// Resolves the settings, starts the server and serves until a signal arrives.
pub async fn run(global: &Global, mut cmd: ServerCmd) -> Result<()> {
    let dev = match cmd.dev {
        true => Some(super::dev::DevSite::prepare(&mut cmd).await?),
        false => None,
    };
    let args = ServerArgs {
        listen: cmd.listen,
        data_dir: dev
            .as_ref()
            .map(|d| d.data_dir.clone())
            .or_else(|| global.data_dir.clone()),
        database_url: cmd.database_url,
        config: cmd.config,
        issuer: cmd.issuer,
        log_format: cmd.log_format,
        plugin_dir: cmd.plugin_dir,
        trusted_keys: std::env::var("CREDDY_PLUGIN_TRUSTED_KEYS").ok(),
        builtin_keys: crate::release::builtin_keys(),
        tls_cert: cmd.tls_cert,
        tls_key: cmd.tls_key,
    };
    let mut settings = Settings::resolve(args, &Environment::current())
        .map_err(|e| Failure::usage(e.to_string()))?;
    logging::init(settings.log_format, global.debug);
    let tls = settings.tls.is_some();
    let clock: Arc<dyn Clock> = match std::env::var_os(TEST_CLOCK_ENV) {
        Some(path) => {
            tracing::warn!(
                "{TEST_CLOCK_ENV} is set: time is shifted by the offset in that file, for tests that \
                 drive the clock of a server process; never set it in production"
            );
            settings.reaper_max_idle = std::time::Duration::from_millis(200);
            Arc::new(OffsetFileClock { path: path.into() })
        }
        None => Arc::new(SystemClock),
    };
    // Watch signals before announcing the listener, so a signal sent as soon as the server
    // says it is up still shuts it down gracefully.
    let signals = ShutdownSignals::install()?;
    let server = Server::start(settings, clock).await.map_err(|e| {
        Failure::new(
            u8::try_from(e.exit_code()).unwrap_or(EXIT_OTHER),
            e.to_string(),
        )
    })?;
    // Whatever the log format, the operator sees this line (§2, step 1).
    eprintln!("{}", server.banner());
    if let Some(dev) = &dev {
        dev.announce(&server, tls)?;
    }
    signals.wait(&server).await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await;
    drop(dev);
    Ok(())
}

/// Names a file holding a number of milliseconds that the server adds to the system time:
/// how fault tests move the clock of a real server process. Read at every clock reading.
const TEST_CLOCK_ENV: &str = "CREDDY_TEST_CLOCK_FILE";

/// The system time plus the offset written in a file (0 while the file is missing or
/// unreadable).
#[derive(Debug)]
struct OffsetFileClock {
    path: std::path::PathBuf,
}

impl Clock for OffsetFileClock {
    fn now(&self) -> Timestamp {
        let offset: i64 = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Timestamp::from_millis(SystemClock.now().as_millis().saturating_add(offset))
    }
}

/// SIGINT and SIGTERM stop the server; SIGHUP reloads the policies.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self> {
        let install = |kind| {
            signal(kind).map_err(|e| Failure::new(EXIT_OTHER, format!("cannot watch signals: {e}")))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    /// Serves until SIGINT or SIGTERM; SIGHUP reloads the policies and trusts (an invalid
    /// file keeps those in force, with an error in the log).
    async fn wait(mut self, server: &Server) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                _ = self.hangup.recv() => {
                    match server.reload_rules().await {
                        Ok(()) => tracing::info!("SIGHUP: policies and trusts reloaded"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: policies and trusts not reloaded; the previous ones stay in force"),
                    }
                    match server.reload_certificate() {
                        Ok(true) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; the previous one stays in force"),
                    }
                }
            }
        }
    }
}

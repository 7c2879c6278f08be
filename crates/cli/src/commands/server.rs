//! `creddy server`: run the server in the foreground until SIGINT or SIGTERM.

use std::sync::Arc;

use creddy_core::SystemClock;
use creddy_server::config::Environment;
use creddy_server::{Server, ServerArgs, Settings, logging};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Global, ServerCmd};
use crate::failure::{EXIT_OTHER, Failure, Result};

/// Resolves the settings, starts the server and serves until a signal arrives.
pub async fn run(global: &Global, cmd: ServerCmd) -> Result<()> {
    let args = ServerArgs {
        listen: cmd.listen,
        data_dir: global.data_dir.clone(),
        database_url: cmd.database_url,
        config: cmd.config,
        issuer: cmd.issuer,
        log_format: cmd.log_format,
    };
    let settings = Settings::resolve(args, &Environment::current())
        .map_err(|e| Failure::usage(e.to_string()))?;
    logging::init(settings.log_format, global.debug);
    let server = Server::start(settings, Arc::new(SystemClock))
        .await
        .map_err(|e| {
            Failure::new(
                u8::try_from(e.exit_code()).unwrap_or(EXIT_OTHER),
                e.to_string(),
            )
        })?;
    wait_for_shutdown_signal().await?;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown_signal() -> Result<()> {
    let install = |kind| {
        signal(kind).map_err(|e| Failure::new(EXIT_OTHER, format!("cannot watch signals: {e}")))
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let mut hangup = install(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = hangup.recv() => tracing::info!("SIGHUP received: nothing to reload yet"),
        }
    }
}

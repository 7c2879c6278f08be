//! Logs via tracing to stderr, as text or JSON; the filter comes from `CREDDY_LOG`.
//!
//! Secrets never reach a log line: they are types that redact themselves, access logs carry
//! paths without query strings, and the `Authorization` header is never recorded.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::LogFormat;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat, debug: bool) {
    let default = if debug { "debug" } else { "info,sqlx=warn" };
    let filter = std::env::var("CREDDY_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

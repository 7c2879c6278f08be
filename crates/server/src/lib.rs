//! creddy's server: configuration, the data directory, the HTTP API and background tasks.
//!
//! The server is a value: [`Server::start`] takes resolved [`Settings`] and a [`Clock`],
//! binds, and returns a handle that tests drive on `127.0.0.1:0` and the binary drives until a
//! signal. The engine (every module but [`http`]) knows nothing of HTTP and answers with
//! [`EngineError`]; [`http`] is its HTTP front end, and `server` assembles the two. The pure
//! domain lives in `creddy-core` and state in `creddy-store`.
//!
//! [`Clock`]: creddy_core::Clock

mod auth;
mod backend_admin;
pub mod backends;
pub mod config;
pub mod data_dir;
mod enrollment;
mod error;
pub mod http;
pub mod logging;
pub mod metrics;
mod oidc;
mod plugin_events;
pub mod proxies;
mod ratelimit;
mod revocation;
pub mod sealing;
mod server;
mod state;
mod sync;
mod tasks;
pub mod tls;
pub mod vend;

pub use config::{LogFormat, ServerArgs, Settings};
pub use error::{EngineError, ErrorCode};
pub use server::{Server, StartError};
pub use state::AppState;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

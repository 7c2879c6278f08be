//! creddy's server: configuration, the data directory, the HTTP API and background tasks.
//!
//! The server is a value: [`Server::start`] takes resolved [`Settings`] and a [`Clock`],
//! binds, and returns a handle that tests drive on `127.0.0.1:0` and the binary drives until a
//! signal. The engine (every module but [`http`]) knows nothing of HTTP and answers with
//! [`EngineError`]; [`http`] is its HTTP front end, and `server` assembles the two. The pure
//! domain lives in `creddy-core` and state in `creddy-store`.
//!
//! [`Clock`]: creddy_core::Clock

pub mod config;
pub mod data_dir;
pub mod engine;
pub mod http;
pub mod logging;
pub mod proxies;
mod server;
pub mod tls;

pub use config::{LogFormat, ServerArgs, Settings};
pub use engine::error::{EngineError, ErrorCode};
pub use engine::state::Engine;
pub use engine::{backends, metrics, sealing, vend};
pub use server::{Server, StartError};

/// The server's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! creddy's plugins: the protocol, the host that runs them, the SDK that builds them.
//!
//! A plugin is an executable `creddy-<name>` that speaks JSON-RPC 2.0 on its stdin and
//! stdout, one message per line, hello first ([`protocol`]). The server runs one child per
//! configured backend through the [`host`], which clears the child's environment, checks the
//! binary's SHA-256 before every start, bounds every call with a timeout and every frame
//! with a size limit, forwards stderr into the server's log, and restarts a crashed plugin
//! with backoff. Plugin authors implement [`sdk::Plugin`] and call [`sdk::run`], which also
//! gives the plugin standalone commands for testing without a server.
//!
//! **Master credentials reach a plugin only inside the `configure` call**: never in argv or
//! the environment, and the host never logs call parameters.

pub mod frame;
pub mod host;
pub mod installed;
pub mod protocol;
#[cfg(feature = "publish")]
pub mod publish;
pub mod registry;
pub mod route_policy;
pub mod sdk;
pub mod signing;
pub mod version;

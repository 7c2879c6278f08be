//! The engine: creddy's domain, free of HTTP (ARCHITECTURE.md, invariant 7). Every front end
//! (the HTTP API in `crate::http` today; proxy mode and the console next) calls these
//! functions with the [`Engine`](state::Engine) handle and renders their answers and
//! [`EngineError`](error::EngineError)s its own way. Nothing here names `axum`, `hyper` or
//! `tower`, or reaches into `crate::http`; `tests/boundary.rs` holds that.
//!
//! - [`state`]: the handle (store, clock, sealer, backends, keys, limiters, settings).
//! - [`auth`]: who a bearer token belongs to, and what a principal may do.
//! - [`vend`]: authorise, record the intent, mint through the plugin, commit, audit.
//! - [`leases`]: reading leases (an admin's pages, an agent's own).
//! - [`revocation`] and [`tasks`]: revoking leases, explicitly and by the reaper; agents'
//!   expiry; draining backends.
//! - [`enrollment`]: enrollments and scope requests with every decision about them.
//! - [`agents`]: agents created and removed by admins.
//! - [`backends`]: live plugin processes; [`backend_config`]: describing plugins, adding and
//!   inspecting backends, restarting plugins; [`backend_admin`]: removing backends.
//! - [`oidc`]: signing keys and their rotation; [`tokens`]: the token endpoint's grants;
//!   [`clients`]: the OIDC clients it authenticated recently.
//! - [`audit`]: verifying the chain.
//! - [`sealing`]: the master key and what it seals.
//! - [`plugin_events`], [`sync`]: plugin changes recorded and announced to other nodes.
//! - [`health`]: liveness counts and readiness.
//! - [`metrics`], [`ratelimit`], [`error`].

pub(crate) mod agents;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod backend_admin;
pub(crate) mod backend_config;
pub mod backends;
pub(crate) mod clients;
pub(crate) mod enrollment;
pub(crate) mod error;
pub(crate) mod exchange;
pub mod federation;
pub(crate) mod health;
pub(crate) mod leases;
pub mod metrics;
pub(crate) mod oidc;
pub(crate) mod plugin_events;
pub(crate) mod ratelimit;
pub(crate) mod revocation;
pub mod sealing;
pub(crate) mod state;
pub(crate) mod sync;
pub(crate) mod tasks;
pub(crate) mod tokens;
pub mod vend;

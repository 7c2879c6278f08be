//! Backends and the plugins behind them: `/v1/admin/backends…` and `/v1/admin/plugins…`.

use creddy_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A configured backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Backend {
    /// `be_<ULID>`.
    pub id: String,
    /// Its name (the first segment of its scopes).
    pub name: String,
    /// The plugin that serves it.
    #[serde(rename = "type")]
    pub plugin: String,
    /// That plugin's version when the backend was added or last reloaded.
    pub plugin_version: String,
    /// `active`, `draining`, `error`, or the plugin process's state.
    pub state: String,
    /// Its open leases.
    pub active_leases: i64,
    /// When it was added.
    pub created_at: Timestamp,
}

/// `POST /v1/admin/backends`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AddBackend {
    /// The plugin (`daytona`).
    #[serde(rename = "type")]
    pub plugin: String,
    /// The backend's name; the plugin's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The configuration, as the plugin's schema declares it.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Ask the upstream to accept the credentials first (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<bool>,
}

/// A backend just added.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedBackend {
    /// The backend.
    #[serde(flatten)]
    pub backend: Backend,
    /// What the plugin's validation warned about.
    pub warnings: Vec<String>,
}

/// A backend with its configuration, secret fields masked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackendDetail {
    /// The backend.
    #[serde(flatten)]
    pub backend: Backend,
    /// Its configuration; secrets are `********`.
    pub config: Map<String, Value>,
}

/// `DELETE /v1/admin/backends/{name}` options.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove at once, queueing its open leases for revocation by nobody (they are forgotten).
    #[serde(default)]
    pub force: bool,
}

/// A backend draining: removed once its open leases are revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Draining {
    /// The backend.
    pub name: String,
    /// Always `draining`.
    pub state: String,
    /// Open leases left.
    pub leases: i64,
}

/// The installed plugins.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginList {
    /// The plugin directory.
    pub dir: String,
    /// Each installed plugin.
    pub plugins: Vec<Plugin>,
}

/// An installed plugin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Plugin {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its executable.
    pub sha256: String,
    /// Whether it came with a verified signature.
    pub signed: bool,
    /// The signer's key id.
    pub signer: Option<String>,
    /// The plugin protocol version it speaks.
    pub protocol_version: u32,
    /// `ok`, `unsigned` (unsigned plugins may not run here) or `integrity_failed`.
    pub state: String,
    /// The backends it serves.
    pub backends: Vec<String>,
}

/// What a plugin reload did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    /// Backends whose plugin started.
    pub loaded: Vec<String>,
    /// Always empty (kept for compatibility).
    pub removed: Vec<String>,
    /// Backends whose plugin version changed.
    pub upgraded: Vec<String>,
}

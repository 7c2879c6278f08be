//! The host side: one supervised plugin process per configured backend.
//!
//! [`PluginProcess::start`] verifies the binary (see [`verify`]), starts it with a cleared
//! environment, says `hello`, checks the protocol and minimum creddy versions, `configure`s
//! it and caches its `constraints`. If the process later exits or breaks the protocol, every
//! call in flight fails at once with [`HostError::Unavailable`], calls made meanwhile fail the
//! same way, and a supervisor restarts it (verifying and configuring again) after 1 s, 2 s,
//! 4 s … up to 60 s. Every call has a timeout; a late answer is dropped.

mod connection;
pub mod verify;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use creddy_core::secret::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::protocol::{
    AgentRef, ConfigSchema, ConfigureParams, Constraints, Credential, Empty, ErrorKind,
    GetCredentialParams, HelloParams, HelloResult, HostInfo, MatchScopeParams, MatchScopeResult,
    PROTOCOL_VERSIONS, RevokeParams, RevokeResult, RpcError, ScopesResult, ValidateResult,
    default_timeout, method,
};
use crate::version::Version;
use connection::Connection;
pub use verify::IntegrityError;

/// What can go wrong calling a plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    /// The plugin is not running (crashed, restarting, or stopped mid-call).
    #[error("plugin unavailable: {0}")]
    Unavailable(String),
    /// The plugin did not answer in time.
    #[error("the plugin did not answer {method} within {after:?}")]
    Timeout {
        /// The method.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// The plugin broke the protocol.
    #[error("plugin protocol error: {0}")]
    Protocol(String),
    /// The plugin answered with an error.
    #[error("{message}")]
    Plugin {
        /// The error kind.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
        /// The plugin's remedy.
        remedy: Option<String>,
        /// Whether a retry may help.
        retryable: bool,
        /// Seconds the upstream asked to wait before retrying.
        retry_after: Option<u64>,
    },
    /// The binary failed its integrity check.
    #[error("plugin integrity check failed: {0}")]
    Integrity(#[from] IntegrityError),
    /// The plugin and this creddy cannot work together.
    #[error("incompatible plugin: {0}")]
    Incompatible(String),
}

impl HostError {
    fn from_rpc(error: RpcError) -> Self {
        let kind = error
            .data
            .as_ref()
            .map(|d| d.kind)
            .or_else(|| ErrorKind::from_code(error.code))
            .unwrap_or(ErrorKind::InternalError);
        let (remedy, retryable, retry_after) = match error.data {
            Some(d) => (d.remedy, d.retryable, d.retry_after),
            None => (None, kind.is_retryable(), None),
        };
        HostError::Plugin {
            kind,
            message: error.message.chars().take(1024).collect(),
            remedy,
            retryable,
            retry_after,
        }
    }
}

/// Everything needed to run a backend's plugin.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The backend's name, for logs and `configure`.
    pub backend: String,
    /// The plugin executable.
    pub binary: PathBuf,
    /// Its SHA-256 as recorded at installation.
    pub sha256: String,
    /// The configuration, defaults applied.
    pub config: Secret<Value>,
    /// This creddy's version (checked against the plugin's minimum).
    pub host_version: String,
    /// `HOME` for the plugin (default: the server's).
    pub home: Option<PathBuf>,
    /// Caps the timeout of calls after start-up (tests use short ones); `None` keeps the
    /// specified ones.
    pub timeout_cap: Option<Duration>,
    /// The first restart delay; doubles up to [`MAX_RESTART_DELAY`].
    pub restart_delay: Duration,
    /// For a signed installation, the keys its stored manifest must verify with before every
    /// start; `None` for an unsigned one.
    pub manifest_keys: Option<Vec<crate::signing::TrustedKey>>,
}

/// The longest pause between restarts.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

impl LaunchSpec {
    /// A spec with the specified timeouts and a 1 s first restart delay.
    pub fn new(
        backend: &str,
        binary: PathBuf,
        sha256: &str,
        config: Value,
        host_version: &str,
    ) -> Self {
        Self {
            backend: backend.to_owned(),
            binary,
            sha256: sha256.to_owned(),
            config: Secret::new(config),
            host_version: host_version.to_owned(),
            home: None,
            timeout_cap: None,
            restart_delay: Duration::from_secs(1),
            manifest_keys: None,
        }
    }

    /// The spec for a backend of the installed `plugin`: a signed installation is checked
    /// against its signed manifest and `trusted` before every start, an unsigned one (allowed
    /// only with `plugins.allow_unsigned`) by its recorded hash alone.
    pub fn for_plugin(
        backend: &str,
        plugin: &crate::installed::InstalledPlugin,
        trusted: &[crate::signing::TrustedKey],
        config: Value,
        host_version: &str,
    ) -> Self {
        let mut spec = Self::new(
            backend,
            plugin.binary.clone(),
            &plugin.record.sha256,
            config,
            host_version,
        );
        if plugin.record.signed {
            spec.manifest_keys = Some(trusted.to_vec());
        }
        spec
    }

    /// The timeout of a call: the specified one, capped by `timeout_cap` except for the
    /// start-up exchange, which a busy machine must not fail.
    fn timeout(&self, method_name: &str) -> Duration {
        let specified = default_timeout(method_name);
        let start_up = matches!(
            method_name,
            method::HELLO
                | method::CONFIGURE
                | method::CONSTRAINTS
                | method::INFO
                | method::SCOPES
                | method::CONFIG_SCHEMA
        );
        match self.timeout_cap {
            Some(cap) if !start_up => specified.min(cap),
            _ => specified,
        }
    }
}

/// What the host learned when the plugin started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The `hello` answer.
    pub hello: HelloResult,
    /// The cached `constraints`.
    pub constraints: Constraints,
}

#[derive(Debug)]
struct Inner {
    spec: LaunchSpec,
    current: Mutex<Option<Arc<Connection>>>,
    started: Mutex<Started>,
    restarts: watch::Sender<u64>,
    stop: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A supervised plugin process for one backend.
#[derive(Debug, Clone)]
pub struct PluginProcess {
    inner: Arc<Inner>,
}

impl PluginProcess {
    /// Verifies, starts, greets and configures the plugin; fails when any step fails.
    pub async fn start(spec: LaunchSpec) -> Result<Self, HostError> {
        let (connection, started) = launch(&spec).await?;
        let inner = Arc::new(Inner {
            spec,
            current: Mutex::new(Some(Arc::new(connection))),
            started: Mutex::new(started),
            restarts: watch::channel(0).0,
            stop: watch::channel(false).0,
        });
        tokio::spawn(supervise(Arc::downgrade(&inner), inner.stop.subscribe()));
        Ok(Self { inner })
    }

    /// The backend this process serves.
    pub fn backend(&self) -> &str {
        &self.inner.spec.backend
    }

    /// What the plugin said at its latest start.
    pub fn started(&self) -> Started {
        lock(&self.inner.started).clone()
    }

    /// Counts restarts; tests wait on it instead of sleeping.
    pub fn restarts(&self) -> watch::Receiver<u64> {
        self.inner.restarts.subscribe()
    }

    /// How many answers the current process sent after their call had timed out (each
    /// dropped, never taken for another call's answer); tests wait on it.
    pub fn late_answers(&self) -> u64 {
        self.connection().map_or(0, |c| c.late_answers())
    }

    /// True while a plugin process is up.
    pub fn is_running(&self) -> bool {
        self.connection().is_some_and(|c| c.is_alive())
    }

    fn connection(&self) -> Option<Arc<Connection>> {
        lock(&self.inner.current).clone()
    }

    /// Calls a method with its specified timeout.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method_name: &str,
        params: &P,
    ) -> Result<R, HostError> {
        let connection = self.connection().filter(|c| c.is_alive()).ok_or_else(|| {
            HostError::Unavailable(format!(
                "the plugin of backend '{}' is restarting",
                self.inner.spec.backend
            ))
        })?;
        connection
            .call(method_name, params, self.inner.spec.timeout(method_name))
            .await
    }

    /// `validate`.
    pub async fn validate(&self) -> Result<Vec<String>, HostError> {
        let result: ValidateResult = self.call(method::VALIDATE, &Empty {}).await?;
        Ok(result.warnings)
    }

    /// `proxy_target`: where proxied calls go (and, for `master`, the credential).
    pub async fn proxy_target(
        &self,
        inject: crate::protocol::Inject,
    ) -> Result<crate::protocol::ProxyTarget, HostError> {
        self.call(
            method::PROXY_TARGET,
            &crate::protocol::ProxyTargetParams { inject },
        )
        .await
    }

    /// `get_credential`.
    pub async fn get_credential(
        &self,
        params: &GetCredentialParams,
    ) -> Result<Credential, HostError> {
        self.call(method::GET_CREDENTIAL, params).await
    }

    /// `revoke_credential`.
    pub async fn revoke_credential(
        &self,
        external_id: Option<String>,
        lease_id: &str,
        agent: AgentRef,
    ) -> Result<RevokeResult, HostError> {
        let params = RevokeParams {
            external_id,
            lease_id: lease_id.to_owned(),
            agent,
        };
        self.call(method::REVOKE_CREDENTIAL, &params).await
    }

    /// `match_scope`.
    pub async fn match_scope(&self, scope: &str) -> Result<MatchScopeResult, HostError> {
        self.call(
            method::MATCH_SCOPE,
            &MatchScopeParams {
                scope: scope.to_owned(),
            },
        )
        .await
    }

    /// `scopes`.
    pub async fn scopes(&self) -> Result<ScopesResult, HostError> {
        self.call(method::SCOPES, &Empty {}).await
    }

    /// `config_schema`.
    pub async fn config_schema(&self) -> Result<ConfigSchema, HostError> {
        self.call(method::CONFIG_SCHEMA, &Empty {}).await
    }

    /// Stops the supervisor and the process (`shutdown`, then SIGKILL after 5 s).
    pub async fn stop(&self) {
        let _ = self.inner.stop.send(true);
        let connection = lock(&self.inner.current).take();
        if let Some(connection) = connection {
            connection
                .stop(self.inner.spec.timeout(method::SHUTDOWN))
                .await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The checks of [`check_integrity`] for an installed plugin, without starting it: the signed
/// manifest (for a signed installation) and the binary's placement and hash.
pub fn verify_installation(
    plugin: &crate::installed::InstalledPlugin,
    trusted: &[crate::signing::TrustedKey],
) -> Result<(), IntegrityError> {
    let spec = LaunchSpec::for_plugin("check", plugin, trusted, Value::Null, "");
    verify_manifest_of(&spec)?;
    verify::verify_binary(&spec.binary, &spec.sha256)
}

/// For a signed installation, the stored manifest's signature and that it lists the
/// recorded SHA-256.
fn verify_manifest_of(spec: &LaunchSpec) -> Result<(), IntegrityError> {
    match &spec.manifest_keys {
        Some(keys) => {
            crate::registry::verify_manifest(&spec.binary, &spec.sha256, keys).map_err(|e| {
                IntegrityError {
                    path: spec.binary.display().to_string(),
                    problem: e.to_string(),
                }
            })
        }
        None => Ok(()),
    }
}

/// The integrity checks run before every start: for signed installations the stored
/// manifest's signature against the trusted keys and that it lists the recorded SHA-256, then
/// the binary's placement and hash. Returns the verified bytes, which are what is executed.
async fn check_integrity(spec: &LaunchSpec) -> Result<verify::VerifiedImage, HostError> {
    let spec = spec.clone();
    let image = tokio::task::spawn_blocking(move || {
        verify_manifest_of(&spec)?;
        verify::load_verified(&spec.binary, &spec.sha256)
    })
    .await
    .map_err(|e| HostError::Unavailable(e.to_string()))??;
    Ok(image)
}

/// Verifies and spawns the plugin (with `serve`), running the verified bytes.
async fn spawn_verified(
    spec: &LaunchSpec,
    backend: &str,
    home: Option<&std::path::Path>,
) -> Result<Connection, HostError> {
    let image = check_integrity(spec).await?;
    // The image's descriptor is inherited by the child; this process's copy closes when
    // `image` drops, after the spawn.
    Connection::spawn(&image.exec_path(), &spec.binary, backend, home).await
}

/// Verify, spawn, hello, version checks, configure, constraints.
async fn launch(spec: &LaunchSpec) -> Result<(Connection, Started), HostError> {
    let connection = spawn_verified(spec, &spec.backend, spec.home.as_deref()).await?;
    match handshake(spec, &connection).await {
        Ok(started) => Ok((connection, started)),
        Err(e) => {
            connection.kill().await;
            Err(e)
        }
    }
}

async fn handshake(spec: &LaunchSpec, connection: &Connection) -> Result<Started, HostError> {
    let hello = greet(spec, connection).await?;
    let _: Empty = connection
        .call(
            method::CONFIGURE,
            &ConfigureParams {
                backend: spec.backend.clone(),
                config: spec.config.clone(),
            },
            spec.timeout(method::CONFIGURE),
        )
        .await?;
    let constraints: Constraints = connection
        .call(
            method::CONSTRAINTS,
            &Empty {},
            spec.timeout(method::CONSTRAINTS),
        )
        .await?;
    Ok(Started { hello, constraints })
}

/// `hello`, then the checks that the plugin and this creddy can work together.
async fn greet(spec: &LaunchSpec, connection: &Connection) -> Result<HelloResult, HostError> {
    let hello_params = HelloParams {
        protocol_versions: PROTOCOL_VERSIONS.to_vec(),
        host: HostInfo {
            name: "creddy".into(),
            version: spec.host_version.clone(),
        },
    };
    let hello: HelloResult = connection
        .call(method::HELLO, &hello_params, spec.timeout(method::HELLO))
        .await
        .map_err(|e| match e {
            HostError::Plugin {
                kind: ErrorKind::UnsupportedProtocol,
                message,
                ..
            } => HostError::Incompatible(message),
            other => other,
        })?;
    if !PROTOCOL_VERSIONS.contains(&hello.protocol_version) {
        return Err(HostError::Incompatible(format!(
            "the plugin chose protocol version {}, which this creddy does not speak ({PROTOCOL_VERSIONS:?})",
            hello.protocol_version
        )));
    }
    check_min_version(&hello.plugin.min_creddy_version, &spec.host_version)?;
    Ok(hello)
}

fn check_min_version(required: &str, host: &str) -> Result<(), HostError> {
    let (Some(required_v), Some(host_v)) = (Version::parse(required), Version::parse(host)) else {
        return Err(HostError::Incompatible(format!(
            "unreadable versions (plugin needs '{required}', creddy is '{host}')"
        )));
    };
    if required_v > host_v {
        return Err(HostError::Incompatible(format!(
            "the plugin needs creddy {required_v} or newer; this is {host_v}"
        )));
    }
    Ok(())
}

/// Restarts the plugin whenever its process dies, until stopped or dropped.
async fn supervise(inner: Weak<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        let Some(connection) = inner.upgrade().and_then(|i| lock(&i.current).clone()) else {
            return;
        };
        tokio::select! {
            () = connection.died() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        drop(connection);
        let mut delay = match inner.upgrade() {
            Some(i) => {
                lock(&i.current).take();
                i.spec.restart_delay
            }
            None => return,
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let Some(strong) = inner.upgrade() else {
                return;
            };
            match launch(&strong.spec).await {
                Ok((connection, started)) => {
                    *lock(&strong.current) = Some(Arc::new(connection));
                    *lock(&strong.started) = started;
                    strong.restarts.send_modify(|n| *n += 1);
                    tracing::info!(backend = %strong.spec.backend, "plugin restarted");
                    break;
                }
                Err(e) => {
                    tracing::error!(backend = %strong.spec.backend, error = %e, "plugin restart failed; retrying in {:?}", delay.saturating_mul(2).min(MAX_RESTART_DELAY));
                    delay = delay.saturating_mul(2).min(MAX_RESTART_DELAY);
                }
            }
        }
    }
}

/// What a plugin says about itself, asked without configuring it (for `backend add`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Description {
    /// `info`.
    pub info: crate::protocol::PluginInfo,
    /// `scopes`.
    pub scopes: Vec<crate::protocol::ScopeInfo>,
    /// `config_schema`.
    pub config_schema: ConfigSchema,
    /// `constraints`.
    pub constraints: Constraints,
}

/// Starts the plugin (after the same integrity checks as every start), asks `hello`, `info`,
/// `scopes`, `config_schema` and `constraints`, and stops it again.
pub async fn describe(
    plugin: &crate::installed::InstalledPlugin,
    trusted: &[crate::signing::TrustedKey],
    host_version: &str,
) -> Result<Description, HostError> {
    let spec = LaunchSpec::for_plugin("describe", plugin, trusted, Value::Null, host_version);
    let connection = spawn_verified(&spec, &spec.backend, None).await?;
    let result = async {
        greet(&spec, &connection).await?;
        let info = connection
            .call(method::INFO, &Empty {}, spec.timeout(method::INFO))
            .await?;
        let scopes: ScopesResult = connection
            .call(method::SCOPES, &Empty {}, spec.timeout(method::SCOPES))
            .await?;
        let config_schema = connection
            .call(
                method::CONFIG_SCHEMA,
                &Empty {},
                spec.timeout(method::CONFIG_SCHEMA),
            )
            .await?;
        let constraints = connection
            .call(
                method::CONSTRAINTS,
                &Empty {},
                spec.timeout(method::CONSTRAINTS),
            )
            .await?;
        Ok(Description {
            info,
            scopes: scopes.scopes,
            config_schema,
            constraints,
        })
    }
    .await;
    connection.stop(spec.timeout(method::SHUTDOWN)).await;
    result
}

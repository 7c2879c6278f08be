//! Starting and stopping a server.
//!
//! Start-up order: open and lock the data directory, open the store (applying migrations),
//! make sure this node has a local admin token, bind, then serve and start the background
//! tasks. Shutdown stops accepting, lets in-flight requests finish (up to 10 seconds), stops
//! the background tasks and closes the store.

use std::net::SocketAddr;
use std::sync::Arc;

use creddy_core::Clock;
use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_core::secret::{SecretToken, TokenHash, TokenKind};
use creddy_store::{Location, Store, StoreError};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, Settings};
use crate::data_dir::{DataDir, DataDirError};
use crate::engine::backends::Backends;
use crate::engine::sealing::Sealer;
use crate::engine::state::{Engine, StateParts, plugin_settings};
use crate::engine::tasks;
use crate::http::listener;
use crate::{VERSION, http};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is unusable or in use.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The store could not be opened.
    #[error("cannot open the store at {location}: {source}")]
    Storage {
        /// Where the store was expected.
        location: String,
        /// Why it failed.
        source: StoreError,
    },
    /// The master key is missing, unreadable, or not the key the data was sealed with.
    #[error("{0}")]
    Key(String),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl StartError {
    /// The process exit code: 2 for configuration and data directory problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_)
            | StartError::DataDir(_)
            | StartError::Key(_)
            | StartError::Tls(_) => 2,
            StartError::Storage { .. } | StartError::Bind { .. } => 1,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Engine,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<()>,
    tasks: JoinHandle<()>,
    follower: JoinHandle<()>,
    certificates: Option<Arc<crate::tls::Certificates>>,
    data_dir: DataDir,
}

impl Server {
    /// Starts a server with the given settings and clock.
    pub async fn start(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        // Outbound TLS (JWKS fetches) uses the process-wide rustls provider: ring's, as
        // everywhere in creddy; an embedding that installed one first keeps it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let data_dir = DataDir::open(&settings.data_dir)?;
        let location = match &settings.database_url {
            Some(url) => Location::Postgres(url.clone()),
            None => Location::Sqlite(data_dir.database()?),
        };
        let store = Store::open(location.clone())
            .await
            .map_err(|source| StartError::Storage {
                location: location.describe(),
                source,
            })?;
        let sealer = open_sealer(&settings, &data_dir, &store)
            .await
            .map_err(|e| match e {
                SealerError::Store(source) => StartError::Storage {
                    location: location.describe(),
                    source,
                },
                SealerError::Key(message) => StartError::Key(message),
            })?;
        // Every audit record from here on carries its keyed hash.
        store.set_audit_key(sealer.audit_key());
        let admin_hash = ensure_admin_token(&data_dir, &store, clock.as_ref())
            .await
            .map_err(|e| match e {
                AdminTokenError::Store(source) => StartError::Storage {
                    location: location.describe(),
                    source,
                },
                AdminTokenError::DataDir(e) => StartError::DataDir(e),
            })?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
        let certificates = settings
            .tls
            .as_ref()
            .map(crate::tls::Certificates::load)
            .transpose()
            .map_err(StartError::Tls)?;
        let acceptor = certificates
            .as_ref()
            .map(crate::tls::Certificates::acceptor)
            .transpose()
            .map_err(StartError::Tls)?;
        let scheme = if certificates.is_some() {
            "https"
        } else {
            "http"
        };
        let issuer = settings
            .issuer
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        if settings.issuer.is_none() && addr.ip().is_unspecified() {
            tracing::warn!(
                "listening on a wildcard address without --issuer: the issuer {issuer} is not reachable by relying parties; pass --issuer with the public URL"
            );
        }
        let records = store
            .list_backends()
            .await
            .map_err(|source| StartError::Storage {
                location: location.describe(),
                source,
            })?;
        let backends = Backends::start_all(&records, &sealer, &plugin_settings(&settings)).await;
        let parts = StateParts {
            admin_token_hash: admin_hash,
            issuer: issuer.clone(),
            sealer,
            backends,
            settings: settings.clone(),
        };
        let state = Engine::new(store, clock, parts);
        record_policies_loaded(&state, "start")
            .await
            .map_err(|source| StartError::Storage {
                location: location.describe(),
                source,
            })?;
        crate::engine::oidc::prepare(&state)
            .await
            .map_err(|source| StartError::Storage {
                location: location.describe(),
                source,
            })?;
        crate::engine::plugin_events::record_changes(&state, false)
            .await
            .map_err(|source| StartError::Storage {
                location: location.describe(),
                source,
            })?;
        let (shutdown, signal) = watch::channel(false);
        let serve = tokio::spawn(listener::serve(
            listener,
            http::router(state.clone()),
            signal.clone(),
            settings.header_read_timeout,
            listener::ConnectionCaps::new(
                settings.limits.max_connections,
                settings.limits.max_connections_per_ip,
            ),
            acceptor,
        ));
        let tasks = tokio::spawn(tasks::reap_expired_agents(state.clone(), signal.clone()));
        // The generation in force now is not news to this node.
        *state.seen_reload_generation() = state
            .store()
            .meta(crate::engine::sync::RELOAD_GENERATION)
            .await
            .ok()
            .flatten();
        let follower = tokio::spawn(crate::engine::sync::follow_other_nodes(
            state.clone(),
            signal,
        ));
        tracing::info!(
            %addr,
            %issuer,
            storage = %location.describe(),
            "creddy {VERSION} started"
        );
        Ok(Self {
            addr,
            state,
            shutdown,
            serve,
            tasks,
            follower,
            certificates,
            data_dir,
        })
    }

    /// Reads the policies and trusts of the configuration file again (SIGHUP) and puts them
    /// in force; an invalid file leaves the old ones in force. Returns the error, if any.
    pub async fn reload_rules(&self) -> Result<(), String> {
        let Some(path) = self.state.settings().config_file.clone() else {
            return Err("no configuration file was read at start; nothing to reload".into());
        };
        let (policies, trusts) = crate::config::reload_rules(&path).map_err(|e| e.to_string())?;
        self.state.replace_rules(policies, trusts);
        record_policies_loaded(&self.state, "reload")
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Reads the TLS certificate and key again (SIGHUP); `Ok(false)` without TLS. On a
    /// problem the certificate in force stays.
    pub fn reload_certificate(&self) -> Result<bool, String> {
        match &self.certificates {
            Some(certificates) => certificates.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The line that says the server is up (§2, step 1): `creddy <version> listening on
    /// <addr>, issuer <url>, storage sqlite (<data dir>)` or `storage postgresql (<host>…)`.
    pub fn banner(&self) -> String {
        let storage = match self.state.store().location() {
            creddy_store::Location::Sqlite(_) => format!("sqlite ({})", self.data_dir().display()),
            other => other.describe(),
        };
        format!(
            "creddy {VERSION} listening on {}, issuer {}, storage {storage}",
            self.addr,
            self.state.issuer()
        )
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state, for tests that drive background tasks.
    pub fn state(&self) -> &Engine {
        &self.state
    }

    /// This node's local admin token, read back from its data directory (what
    /// `creddy server --dev` prints for the admin commands).
    pub fn admin_token(&self) -> Result<Option<creddy_core::secret::SecretToken>, DataDirError> {
        self.data_dir.read_admin_token()
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Stops accepting, drains in-flight requests (up to
    /// [`DRAIN_TIMEOUT`](crate::http::listener::DRAIN_TIMEOUT)), stops the background tasks and
    /// closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.serve.await;
        let _ = self.tasks.await;
        let _ = self.follower.await;
        self.state.backends().stop_all().await;
        self.state.store().close().await;
        tracing::info!("creddy stopped");
    }
}

enum AdminTokenError {
    Store(StoreError),
    DataDir(DataDirError),
}

/// Reads this node's admin token, or creates one on first start (audited, then written to
/// `admin.token` with mode 0600). Only the hash stays in memory.
async fn ensure_admin_token(
    data_dir: &DataDir,
    store: &Store,
    clock: &dyn Clock,
) -> Result<TokenHash, AdminTokenError> {
    if let Some(token) = data_dir
        .read_admin_token()
        .map_err(AdminTokenError::DataDir)?
    {
        return Ok(token.hash());
    }
    let token = SecretToken::generate(TokenKind::Admin);
    let path = data_dir.admin_token_path();
    let event = AuditEvent::new(Action::AdminTokenCreated, Actor::system(), clock.now())
        .with_details(json!({"file": path.display().to_string()}));
    store
        .record_event(&event)
        .await
        .map_err(AdminTokenError::Store)?;
    data_dir
        .write_admin_token(&token)
        .map_err(AdminTokenError::DataDir)?;
    tracing::info!("created the local admin token in {}", path.display());
    Ok(token.hash())
}

enum SealerError {
    Store(StoreError),
    Key(String),
}

/// Writes `policy.loaded` with the SHA-256 of the set in force.
async fn record_policies_loaded(
    state: &Engine,
    when: &str,
) -> Result<(), creddy_store::StoreError> {
    let policies = state.policies();
    let event = creddy_core::audit::AuditEvent::new(
        creddy_core::audit::Action::PolicyLoaded,
        creddy_core::audit::Actor::system(),
        state.clock().now(),
    )
    .with_details(serde_json::json!({
        "sha256": policies.digest(),
        "policies": policies.policies().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        "trusts": state.trusts().all().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "when": when,
    }));
    state.store().record_event(&event).await?;
    tracing::info!(
        count = policies.policies().len(),
        sha256 = policies.digest(),
        "policies loaded"
    );
    Ok(())
}

/// Loads the master key (creating `master.key` in the data directory on first start) and
/// checks it against the key check value every node shares through the store.
async fn open_sealer(
    settings: &Settings,
    data_dir: &DataDir,
    store: &Store,
) -> Result<Sealer, SealerError> {
    let (path, create) = match &settings.key_file {
        Some(path) => (path.clone(), false),
        None => (data_dir.path().join(crate::data_dir::MASTER_KEY_FILE), true),
    };
    let sealer = Sealer::load(&path, create).map_err(|e| SealerError::Key(e.to_string()))?;
    let in_force = store
        .meta_insert_if_absent("key_check", &sealer.key_check())
        .await
        .map_err(SealerError::Store)?;
    if !sealer.matches_key_check(&in_force) {
        return Err(SealerError::Key(format!(
            "the master key {} is not the key this database was set up with; every node sharing a database must use the same master.key (copy it from an existing node or set secrets.key_file)",
            path.display()
        )));
    }
    Ok(sealer)
}

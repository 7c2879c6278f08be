//! The application state handed to every handler: no globals, one value.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use creddy_core::Clock;
use creddy_core::secret::TokenHash;
use creddy_store::Store;

use crate::config::Settings;
use crate::engine::backends::{Backends, PluginSettings};
use crate::engine::metrics::Metrics;
use crate::engine::ratelimit::RateLimiter;
use crate::engine::sealing::Sealer;
use crate::engine::tasks::TaskSignals;
use creddy_core::policy::PolicySet;

/// Shared state of a running server; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    admin_token_hash: TokenHash,
    issuer: String,
    started: Instant,
    tasks: TaskSignals,
    metrics: Metrics,
    policies: RwLock<Arc<PolicySet>>,
    trusts: RwLock<Arc<creddy_core::trust::TrustSet>>,
    keys: crate::engine::oidc::Keys,
    federation: crate::engine::federation::Federation,
    enroll_limiter: RateLimiter,
    token_limiter: RateLimiter,
    clients: crate::engine::clients::ClientCache,
    vend_limiter: RateLimiter,
    request_limiter: RateLimiter,
    auth_failure_limiter: RateLimiter,
    reload_generation: std::sync::Mutex<Option<String>>,
    sealer: Sealer,
    backends: Backends,
    settings: Settings,
}

/// What the state is built from, besides the store and the clock.
#[derive(Debug)]
pub(crate) struct StateParts {
    pub(crate) admin_token_hash: TokenHash,
    pub(crate) issuer: String,
    pub(crate) sealer: Sealer,
    pub(crate) backends: Backends,
    pub(crate) settings: Settings,
}

impl Engine {
    pub(crate) fn new(store: Store, clock: Arc<dyn Clock>, parts: StateParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                admin_token_hash: parts.admin_token_hash,
                issuer: parts.issuer,
                started: Instant::now(),
                tasks: TaskSignals::default(),
                metrics: Metrics::default(),
                policies: RwLock::new(Arc::new(parts.settings.policies.clone())),
                trusts: RwLock::new(Arc::new(parts.settings.trusts.clone())),
                keys: crate::engine::oidc::Keys::default(),
                federation: crate::engine::federation::Federation::default(),
                enroll_limiter: RateLimiter::new(parts.settings.enrollment.per_ip),
                token_limiter: RateLimiter::new(parts.settings.limits.token_per_client),
                clients: crate::engine::clients::ClientCache::default(),
                vend_limiter: RateLimiter::new(parts.settings.limits.vend_per_agent),
                request_limiter: RateLimiter::new(parts.settings.limits.request_per_agent),
                auth_failure_limiter: RateLimiter::new(creddy_core::policy::Rate {
                    count: 1,
                    window_seconds: 60,
                }),
                reload_generation: std::sync::Mutex::new(None),
                sealer: parts.sealer,
                backends: parts.backends,
                settings: parts.settings,
            }),
        }
    }

    /// The policies in force.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.inner
            .policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The workload identity trusts in force (§18).
    pub fn trusts(&self) -> Arc<creddy_core::trust::TrustSet> {
        self.inner
            .trusts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new policy set and trust set in force.
    pub(crate) fn replace_rules(&self, policies: PolicySet, trusts: creddy_core::trust::TrustSet) {
        *self
            .inner
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policies);
        *self
            .inner
            .trusts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(trusts);
    }

    /// The OIDC signing keys in force.
    pub(crate) fn keys(&self) -> &crate::engine::oidc::Keys {
        &self.inner.keys
    }

    /// Records `auth.failed` for `ip`, at most once per address and minute; never the
    /// credential itself. A failure to record is logged, not fatal: the request is refused
    /// anyway.
    pub(crate) async fn record_auth_failure(&self, ip: Option<String>, kind: &str) {
        self.record_auth_failure_with(ip, serde_json::json!({"credential": kind}))
            .await;
    }

    /// Records a failed authentication with `details` (never the credential), at most one
    /// a minute for each address and kind of failure (a token exchange's `trust` and failing
    /// `claim` in `details`), so a flood cannot fill the trail and one kind of failure does
    /// not hide another.
    pub(crate) async fn record_auth_failure_with(
        &self,
        ip: Option<String>,
        details: serde_json::Value,
    ) {
        let now = self.clock().now();
        let kind =
            ["grant", "trust", "claim"].map(|field| details[field].as_str().unwrap_or_default());
        let key = format!("{} {}", ip.as_deref().unwrap_or_default(), kind.join(" "));
        if self.inner.auth_failure_limiter.check(&key, now).is_err() {
            return;
        }
        let event = creddy_core::audit::AuditEvent::new(
            creddy_core::audit::Action::AuthFailed,
            creddy_core::audit::Actor::anonymous(),
            now,
        )
        .with_outcome(creddy_core::audit::Outcome::Denied)
        .from_request(ip, None)
        .with_details(details);
        if let Err(e) = self.store().record_event(&event).await {
            tracing::warn!(error = %e, "could not record a failed authentication");
        }
    }

    /// Whether `token` is this node's local admin token (compared in constant time).
    pub(crate) fn is_admin_token(&self, token: &str) -> bool {
        creddy_core::secret::SecretToken::parse(creddy_core::secret::TokenKind::Admin, token)
            .is_some_and(|t| t.hash().matches(&self.inner.admin_token_hash))
    }

    /// The per-address limit of enrollment requests.
    pub(crate) fn enroll_limiter(&self) -> &RateLimiter {
        &self.inner.enroll_limiter
    }

    /// The verifier of workload identity tokens (§18), with the issuers' keys it holds.
    pub(crate) fn federation(&self) -> &crate::engine::federation::Federation {
        &self.inner.federation
    }

    /// The per-client limit of `/oauth/token` requests.
    pub(crate) fn token_limiter(&self) -> &RateLimiter {
        &self.inner.token_limiter
    }

    /// The OIDC clients authenticated recently (checked at every issue; see
    /// [`crate::engine::clients`]).
    pub(crate) fn clients(&self) -> &crate::engine::clients::ClientCache {
        &self.inner.clients
    }

    /// The per-agent limit of credential requests.
    pub(crate) fn vend_limiter(&self) -> &RateLimiter {
        &self.inner.vend_limiter
    }

    /// The per-agent limit of scope requests (amendments).
    pub(crate) fn request_limiter(&self) -> &RateLimiter {
        &self.inner.request_limiter
    }

    /// The last plugin-reload generation this node acted on (see `sync`).
    pub(crate) fn seen_reload_generation(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.inner
            .reload_generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This server's counters and histograms.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The master key.
    pub(crate) fn sealer(&self) -> &Sealer {
        &self.inner.sealer
    }

    /// The live backends.
    pub fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    /// The settings the server runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Where plugins are and how they run.
    pub(crate) fn plugin_settings(&self) -> PluginSettings {
        plugin_settings(&self.inner.settings)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The clock every expiry decision reads.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// The issuer and public base URL.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Seconds since the server started.
    pub(crate) fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// Signals to and from the background tasks.
    pub fn tasks(&self) -> &TaskSignals {
        &self.inner.tasks
    }
}

/// The plugin settings of `settings`.
pub(crate) fn plugin_settings(settings: &Settings) -> PluginSettings {
    PluginSettings {
        dir: settings.plugin_dir.clone(),
        allow_unsigned: settings.allow_unsigned_plugins,
        timeout_cap: settings.plugin_timeout_cap,
        // Keys were checked when the settings were resolved.
        trusted_keys: settings
            .trusted_plugin_keys
            .iter()
            .filter_map(|k| creddy_plugin::signing::TrustedKey::parse(k).ok())
            .collect(),
    }
}

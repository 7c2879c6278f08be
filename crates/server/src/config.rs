//! Server configuration: defaults, then the TOML file, then `CREDDY_*` environment, then
//! flags, turned into validated [`Settings`] in one step.
//!
//! The binary's flag parser fills a [`ServerArgs`] from flags and environment (flags win);
//! [`Settings::resolve`] lays those over the file and the defaults. A configuration error
//! names the file, the line and the key, and the server refuses to start rather than running
//! with a setting it did not understand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use creddy_core::Duration;
use creddy_core::policy::{Policy, PolicySet, Rate};
use creddy_core::trust::{PlainHttp, Trust, TrustSet};
use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format '{other}' (use text or json)")),
        }
    }
}

/// Values from flags or environment; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct ServerArgs {
    /// `--listen` / `CREDDY_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `CREDDY_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url` / `CREDDY_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--config` / `CREDDY_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--issuer` / `CREDDY_ISSUER`.
    pub issuer: Option<String>,
    /// `--log-format` / `CREDDY_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--plugin-dir` / `CREDDY_PLUGIN_DIR`.
    pub plugin_dir: Option<PathBuf>,
    /// `CREDDY_PLUGIN_TRUSTED_KEYS`: comma-separated minisign public keys.
    pub trusted_keys: Option<String>,
    /// Keys the binary trusts with no setting: the release key built into it and the key of
    /// a workspace build's registry (§17).
    pub builtin_keys: Vec<String>,
    /// `--tls-cert` / `CREDDY_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` / `CREDDY_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
}

/// The `[server]` table of the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    issuer: Option<String>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    tls_cert_file: String,
    #[serde(default)]
    tls_key_file: String,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

impl FileServer {
    /// `trusted_proxies`, each checked.
    fn trusted_proxies(&self, source: &str) -> Result<Vec<crate::proxies::Network>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|text| {
                crate::proxies::Network::parse(text)
                    .map_err(|e| ConfigError(format!("server.trusted_proxies{source}: {e}")))
            })
            .collect()
    }
}

/// `secrets = { key_file = "" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecrets {
    key_file: Option<PathBuf>,
}

/// `ttl.backends.<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackendTtl {
    max: Option<Duration>,
}

/// `ttl = { min, default, max, backends }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTtl {
    min: Option<Duration>,
    default: Option<Duration>,
    max: Option<Duration>,
    #[serde(default)]
    backends: BTreeMap<String, FileBackendTtl>,
}

/// `plugins = { dir, registry, trusted_keys, allow_unsigned }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePlugins {
    /// The plugin directory.
    pub dir: Option<PathBuf>,
    /// The registry the CLI installs from.
    pub registry: Option<String>,
    /// Extra minisign public keys trusted for plugin signatures.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Whether unsigned plugins may run.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// `revocation = { horizon, base_delay, max_delay, concurrency, backends.<name>.horizon }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRevocation {
    horizon: Option<Duration>,
    concurrency: Option<u32>,
    base_delay: Option<Duration>,
    max_delay: Option<Duration>,
    #[serde(default)]
    backends: BTreeMap<String, FileBackendRevocation>,
}

/// `revocation.backends.<name> = { horizon }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackendRevocation {
    horizon: Duration,
}

/// The revocation schedule: retries after `min(max_delay, base_delay × 2^(n−1))` times a
/// random factor in [0.5, 1.5], until the backend's horizon after the first failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    /// Seconds from the first failure to giving up (then `irrevocable`, retried daily), for
    /// backends without their own horizon.
    pub horizon: u64,
    /// Horizons of particular backends, in seconds, by backend name.
    pub backend_horizons: BTreeMap<String, u64>,
    /// The first retry delay, in seconds.
    pub base_delay: u64,
    /// The longest retry delay, in seconds.
    pub max_delay: u64,
    /// The most revocations in flight per backend on one node.
    pub concurrency: usize,
}

/// The most revocations one backend may have in flight on one node, by default.
pub const DEFAULT_REVOCATION_CONCURRENCY: usize = 8;
/// The largest `revocation.concurrency` accepted.
pub const MAX_REVOCATION_CONCURRENCY: u32 = 256;

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            horizon: 86_400,
            backend_horizons: BTreeMap::new(),
            base_delay: 10,
            max_delay: 3_600,
            concurrency: DEFAULT_REVOCATION_CONCURRENCY,
        }
    }
}

impl RevocationSettings {
    /// The retry horizon of `backend`, in seconds.
    pub fn horizon_of(&self, backend: &str) -> u64 {
        self.backend_horizons
            .get(backend)
            .copied()
            .unwrap_or(self.horizon)
    }
}

/// `limits = { enroll_per_ip, token_per_client, vend_per_agent, request_per_agent,
/// max_active_leases_per_agent, max_connections, max_connections_per_ip }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_active_leases_per_agent: Option<u32>,
    enroll_per_ip: Option<Rate>,
    token_per_client: Option<Rate>,
    vend_per_agent: Option<Rate>,
    request_per_agent: Option<Rate>,
    max_connections: Option<u32>,
    max_connections_per_ip: Option<u32>,
}

/// Request and connection limits (§14, §15.7), per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// `/oauth/token` requests per client id (120/minute).
    pub token_per_client: Rate,
    /// Credential requests per agent (600/minute).
    pub vend_per_agent: Rate,
    /// Scope requests (`POST /v1/request`) per agent (10/minute).
    pub request_per_agent: Rate,
    /// Open connections in all (1024; never more than half the descriptor limit).
    pub max_connections: u32,
    /// Open connections from one address (64).
    pub max_connections_per_ip: u32,
    /// How long a client may take to send a request body (15 s).
    pub body_read_timeout: std::time::Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let per_minute = |count| Rate {
            count,
            window_seconds: 60,
        };
        Self {
            token_per_client: per_minute(120),
            vend_per_agent: per_minute(600),
            request_per_agent: per_minute(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
            body_read_timeout: std::time::Duration::from_secs(15),
        }
    }
}

impl LimitSettings {
    fn from_file(file: &FileLimits, source: &str) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        for (key, value) in [
            ("max_connections", file.max_connections),
            ("max_connections_per_ip", file.max_connections_per_ip),
        ] {
            if value == Some(0) {
                return Err(ConfigError(format!(
                    "limits.{key}{source}: must be at least 1"
                )));
            }
        }
        Ok(Self {
            token_per_client: file.token_per_client.unwrap_or(defaults.token_per_client),
            vend_per_agent: file.vend_per_agent.unwrap_or(defaults.vend_per_agent),
            request_per_agent: file.request_per_agent.unwrap_or(defaults.request_per_agent),
            max_connections: file.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_ip: file
                .max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip),
            body_read_timeout: defaults.body_read_timeout,
        })
    }
}

/// `oidc = { alg, token_ttl, rotation_grace }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    alg: Option<String>,
    token_ttl: Option<Duration>,
    /// `"0"` disables scheduled rotation.
    rotate_every: Option<String>,
    rotation_grace: Option<Duration>,
}

/// The OIDC provider's settings (§11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The algorithm of new signing keys: `EdDSA` (default) or `ES256`.
    pub alg: String,
    /// Access and ID token lifetime in seconds (1h, at most 24h).
    pub token_ttl: u64,
    /// Seconds a rotated key stays published (24h, never less than `token_ttl`).
    pub rotation_grace: u64,
    /// Seconds between scheduled rotations (30d); `None` disables them.
    pub rotate_every: Option<u64>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            alg: "EdDSA".to_owned(),
            token_ttl: 3_600,
            rotation_grace: 86_400,
            rotate_every: Some(30 * 86_400),
        }
    }
}

/// `enrollment = { pending_ttl, pickup_ttl, max_pending, max_open_amendments }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEnrollment {
    pending_ttl: Option<Duration>,
    pickup_ttl: Option<Duration>,
    max_pending: Option<u32>,
    max_open_amendments: Option<u32>,
}

/// Enrollment limits (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentSettings {
    /// Seconds a request waits for a decision (24h).
    pub pending_ttl: u64,
    /// Seconds an approved agent has to pick its credentials up (1h).
    pub pickup_ttl: u64,
    /// The most open enrollments (1000); amendments are counted apart.
    pub max_pending: u32,
    /// The most open amendments of one agent (5).
    pub max_open_amendments: u32,
    /// Enrollment requests per client address (20/minute), per node.
    pub per_ip: Rate,
}

impl Default for EnrollmentSettings {
    fn default() -> Self {
        Self {
            pending_ttl: 86_400,
            pickup_ttl: 3_600,
            max_pending: 1_000,
            max_open_amendments: 5,
            per_ip: Rate {
                count: 20,
                window_seconds: 60,
            },
        }
    }
}

/// `audit = { retention_days }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    retention_days: Option<u32>,
}

/// `agents = { inactivity_days }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgents {
    inactivity_days: Option<u32>,
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    agents: FileAgents,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    secrets: FileSecrets,
    #[serde(default)]
    ttl: FileTtl,
    #[serde(default)]
    plugins: FilePlugins,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    revocation: FileRevocation,
    #[serde(default)]
    enrollment: FileEnrollment,
    #[serde(default)]
    oidc: FileOidc,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    policies: Vec<Policy>,
    /// `[[trust]]`: workload identity issuers (§18).
    #[serde(default)]
    trust: Vec<Trust>,
}

/// Server-wide TTL limits in seconds (§6 of the specification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlSettings {
    /// `ttl.min` (1m).
    pub min: u64,
    /// `ttl.default` (10m).
    pub default: u64,
    /// `ttl.max` (24h).
    pub max: u64,
    /// `ttl.backends.<name>.max`.
    pub backend_max: BTreeMap<String, u64>,
}

impl Default for TtlSettings {
    fn default() -> Self {
        Self {
            min: 60,
            default: 600,
            max: 86_400,
            backend_max: BTreeMap::new(),
        }
    }
}

impl TtlSettings {
    /// The server's maximum for one backend.
    pub fn max_for(&self, backend: &str) -> u64 {
        self.backend_max.get(backend).copied().unwrap_or(self.max)
    }
}

/// Validated settings the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The listener address.
    pub listen: SocketAddr,
    /// The state directory.
    pub data_dir: PathBuf,
    /// `None` for SQLite in the data directory.
    pub database_url: Option<String>,
    /// The OIDC issuer and public base URL, without a trailing `/`; `None` means
    /// `http://<bound address>`.
    pub issuer: Option<String>,
    /// The log line format.
    pub log_format: LogFormat,
    /// How long a client may take to send request headers.
    pub header_read_timeout: std::time::Duration,
    /// `master.key`, or `secrets.key_file`.
    pub key_file: Option<PathBuf>,
    /// Where plugins are installed.
    pub plugin_dir: PathBuf,
    /// Whether unsigned plugins may run.
    pub allow_unsigned_plugins: bool,
    /// TTL limits.
    pub ttl: TtlSettings,
    /// The most `pending` or `active` leases one agent may hold.
    pub max_active_leases_per_agent: u32,
    /// Caps every plugin call's timeout (tests use short ones); `None` keeps the specified.
    pub plugin_timeout_cap: Option<std::time::Duration>,
    /// Minisign public keys whose signatures on plugin manifests are trusted.
    pub trusted_plugin_keys: Vec<String>,
    /// The revocation schedule.
    pub revocation: RevocationSettings,
    /// The longest the reaper sleeps between sweeps (30 s; shorter only when a test drives
    /// the clock from outside the process).
    pub reaper_max_idle: std::time::Duration,
    /// Enrollment limits.
    pub enrollment: EnrollmentSettings,
    /// Request rates and connections.
    pub limits: LimitSettings,
    /// Agents unused this many days are removed (0: never).
    pub agents_inactivity_days: u32,
    /// Audit records older than this many days are pruned (0: kept forever).
    pub audit_retention_days: u32,
    /// HTTPS on the listener, when both files are given.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Networks whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<crate::proxies::Network>,
    /// The OIDC provider.
    pub oidc: OidcSettings,
    /// The policies, in file order.
    pub policies: PolicySet,
    /// The trusted workload identity issuers (§18), in file order.
    pub trusts: TrustSet,
    /// The configuration file, if one was read (SIGHUP reloads its policies and trusts).
    pub config_file: Option<PathBuf>,
}

/// A configuration problem; the server exits 2 with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Where the defaults come from: the user's identity and home.
#[derive(Debug, Clone)]
pub struct Environment {
    /// True when running as root.
    pub is_root: bool,
    /// `$HOME`, when set.
    pub home: Option<PathBuf>,
}

impl Environment {
    /// The current process's environment.
    pub fn current() -> Self {
        Self {
            is_root: rustix::process::geteuid().is_root(),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The default data directory: `/var/lib/creddy` for root, else
    /// `~/.local/share/creddy`.
    pub fn default_data_dir(&self) -> Option<PathBuf> {
        if self.is_root {
            Some(PathBuf::from("/var/lib/creddy"))
        } else {
            self.home.as_ref().map(|h| h.join(".local/share/creddy"))
        }
    }

    /// The default plugin directory: `/usr/local/lib/creddy/plugins` for root, else
    /// `~/.local/share/creddy/plugins`. The one rule the server and the CLI share.
    pub fn default_plugin_dir(&self) -> Option<PathBuf> {
        if self.is_root {
            Some(PathBuf::from("/usr/local/lib/creddy/plugins"))
        } else {
            self.home
                .as_ref()
                .map(|h| h.join(".local/share/creddy/plugins"))
        }
    }

    /// The default configuration file: `/etc/creddy/creddy.toml` for root, else
    /// `~/.config/creddy/creddy.toml`.
    pub fn default_config_file(&self) -> Option<PathBuf> {
        if self.is_root {
            Some(PathBuf::from("/etc/creddy/creddy.toml"))
        } else {
            self.home
                .as_ref()
                .map(|h| h.join(".config/creddy/creddy.toml"))
        }
    }
}

/// The default listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8400";
/// How long a client may take to send a request's headers (and how long an idle keep-alive
/// connection is kept).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest the reaper sleeps between sweeps by default, so a removal happens within a
/// minute even when an agent is created by another node (see `Settings::reaper_max_idle`).
pub const REAPER_MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// The most open leases of one agent (`limits.max_active_leases_per_agent`).
pub const MAX_ACTIVE_LEASES_PER_AGENT: u32 = 100;
/// The signing algorithms offered: EdDSA (default), and ES256 or RS256 for relying parties
/// that cannot verify EdDSA (many cloud federation endpoints).
pub const SIGNING_ALGS: [&str; 3] = ["EdDSA", "ES256", "RS256"];

impl Settings {
    /// Lays flags and environment over the configuration file over the defaults, and
    /// validates the result. An explicitly named file must exist; the default file may not.
    pub fn resolve(args: ServerArgs, env: &Environment) -> Result<Self, ConfigError> {
        let (file, source, config_file) = load_file(&args, env)?;
        let enrollment = enrollment_settings(&file);
        let trusted_proxies = file.server.trusted_proxies(&source)?;
        let tls = tls_files(
            args.tls_cert.clone(),
            args.tls_key.clone(),
            &file.server,
            &source,
        )?;

        let listen_text = args
            .listen
            .or(file.server.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "invalid listen address '{listen_text}'{source}: use IP:PORT, e.g. 127.0.0.1:8400 or 0.0.0.0:8400"
            ))
        })?;
        let data_dir = args
            .data_dir
            .or(file.server.data_dir)
            .or_else(|| env.default_data_dir())
            .ok_or_else(|| {
                ConfigError(
                    "no data directory: HOME is not set; pass --data-dir or set CREDDY_DATA_DIR"
                        .into(),
                )
            })?;
        let database_url = args
            .database_url
            .or(file.server.database_url)
            .filter(|u| !u.is_empty());
        if let Some(url) = &database_url {
            check_database_url(url, &source)?;
        }
        let issuer = match args.issuer.or(file.server.issuer).filter(|i| !i.is_empty()) {
            Some(issuer) => Some(check_issuer(&issuer, &source)?),
            None => None,
        };
        let plugin_dir = args
            .plugin_dir
            .or(file
                .plugins
                .dir
                .clone()
                .filter(|d| !d.as_os_str().is_empty()))
            .or_else(|| env.default_plugin_dir())
            .ok_or_else(|| {
                ConfigError("no plugin directory: HOME is not set; set CREDDY_PLUGIN_DIR".into())
            })?;
        Ok(Self {
            listen,
            data_dir,
            database_url,
            issuer,
            log_format: args
                .log_format
                .or(file.server.log_format)
                .unwrap_or_default(),
            header_read_timeout: HEADER_READ_TIMEOUT,
            key_file: file.secrets.key_file.filter(|k| !k.as_os_str().is_empty()),
            plugin_dir,
            allow_unsigned_plugins: file.plugins.allow_unsigned,
            ttl: ttl_settings(file.ttl),
            max_active_leases_per_agent: file
                .limits
                .max_active_leases_per_agent
                .unwrap_or(MAX_ACTIVE_LEASES_PER_AGENT),
            plugin_timeout_cap: None,
            trusted_plugin_keys: trusted_keys(
                &args.builtin_keys,
                &file.plugins,
                args.trusted_keys.as_deref(),
                &source,
            )?,
            revocation: revocation_settings(&file.revocation)?,
            reaper_max_idle: REAPER_MAX_IDLE,
            enrollment,
            limits: LimitSettings::from_file(&file.limits, &source)?,
            agents_inactivity_days: file.agents.inactivity_days.unwrap_or(0),
            audit_retention_days: file.audit.retention_days.unwrap_or(0),
            tls,
            trusted_proxies,
            oidc: oidc_settings(&file.oidc, &source)?,
            policies: PolicySet::new(file.policies)
                .map_err(|e| ConfigError(format!("invalid policies{source}: {e}")))?,
            trusts: trust_set(file.trust, &source)?,
            config_file,
        })
    }

    /// Settings for tests and embedding: defaults with the given data directory and an
    /// ephemeral loopback port.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            database_url: None,
            issuer: None,
            log_format: LogFormat::Text,
            header_read_timeout: HEADER_READ_TIMEOUT,
            key_file: None,
            plugin_dir: data_dir.join("plugins"),
            allow_unsigned_plugins: false,
            ttl: TtlSettings::default(),
            max_active_leases_per_agent: MAX_ACTIVE_LEASES_PER_AGENT,
            plugin_timeout_cap: None,
            trusted_plugin_keys: Vec::new(),
            revocation: RevocationSettings::default(),
            reaper_max_idle: REAPER_MAX_IDLE,
            enrollment: EnrollmentSettings::default(),
            limits: LimitSettings::default(),
            agents_inactivity_days: 0,
            audit_retention_days: 0,
            tls: None,
            trusted_proxies: Vec::new(),
            oidc: OidcSettings::default(),
            policies: PolicySet::default(),
            trusts: TrustSet::default(),
            config_file: None,
        }
    }
}

/// The certificate and key files: both or neither, flags before the file.
fn tls_files(
    cert_flag: Option<PathBuf>,
    key_flag: Option<PathBuf>,
    file: &FileServer,
    source: &str,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let given = |flag: Option<PathBuf>, text: &str| {
        flag.filter(|p| !p.as_os_str().is_empty())
            .or_else(|| (!text.is_empty()).then(|| PathBuf::from(text)))
    };
    match (
        given(cert_flag, &file.tls_cert_file),
        given(key_flag, &file.tls_key_file),
    ) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles { cert, key })),
        (None, None) => Ok(None),
        _ => Err(ConfigError(format!(
            "server.tls_cert_file and tls_key_file{source}: give both (--tls-cert and --tls-key) or neither"
        ))),
    }
}

/// The plugin signers trusted, by the one rule of the server and the CLI: the built-in keys,
/// then `plugins.trusted_keys`, then `CREDDY_PLUGIN_TRUSTED_KEYS` (comma-separated), each
/// checked to be a minisign public key.
pub fn trusted_keys(
    builtin: &[String],
    plugins: &FilePlugins,
    from_env: Option<&str>,
    source: &str,
) -> Result<Vec<String>, ConfigError> {
    let keys: Vec<String> = builtin
        .iter()
        .chain(&plugins.trusted_keys)
        .map(|k| k.trim().to_owned())
        .chain(
            from_env
                .unwrap_or_default()
                .split(',')
                .map(|k| k.trim().to_owned()),
        )
        .filter(|k| !k.is_empty())
        .collect();
    for key in &keys {
        creddy_plugin::signing::TrustedKey::parse(key)
            .map_err(|e| ConfigError(format!("plugins.trusted_keys{source}: {e}")))?;
    }
    Ok(keys)
}

/// `[revocation]` over the defaults.
fn revocation_settings(file: &FileRevocation) -> Result<RevocationSettings, ConfigError> {
    let defaults = RevocationSettings::default();
    let concurrency = match file.concurrency {
        None => defaults.concurrency,
        Some(n @ 1..=MAX_REVOCATION_CONCURRENCY) => n as usize,
        Some(n) => {
            return Err(ConfigError(format!(
                "revocation.concurrency is {n}: use 1 to {MAX_REVOCATION_CONCURRENCY} revocations in flight per backend (default {DEFAULT_REVOCATION_CONCURRENCY})"
            )));
        }
    };
    Ok(RevocationSettings {
        horizon: file.horizon.map_or(defaults.horizon, Duration::as_seconds),
        backend_horizons: file
            .backends
            .iter()
            .map(|(name, b)| (name.clone(), b.horizon.as_seconds()))
            .collect(),
        base_delay: file
            .base_delay
            .map_or(defaults.base_delay, Duration::as_seconds),
        max_delay: file
            .max_delay
            .map_or(defaults.max_delay, Duration::as_seconds),
        concurrency,
    })
}

/// `[enrollment]` and `limits.enroll_per_ip` over the defaults.
fn enrollment_settings(file: &FileConfig) -> EnrollmentSettings {
    let defaults = EnrollmentSettings::default();
    let enrollment = &file.enrollment;
    EnrollmentSettings {
        pending_ttl: enrollment
            .pending_ttl
            .map_or(defaults.pending_ttl, Duration::as_seconds),
        pickup_ttl: enrollment
            .pickup_ttl
            .map_or(defaults.pickup_ttl, Duration::as_seconds),
        max_pending: enrollment.max_pending.unwrap_or(defaults.max_pending),
        max_open_amendments: enrollment
            .max_open_amendments
            .unwrap_or(defaults.max_open_amendments),
        per_ip: file.limits.enroll_per_ip.unwrap_or(defaults.per_ip),
    }
}

fn ttl_settings(file: FileTtl) -> TtlSettings {
    let defaults = TtlSettings::default();
    TtlSettings {
        min: file.min.map_or(defaults.min, Duration::as_seconds),
        default: file.default.map_or(defaults.default, Duration::as_seconds),
        max: file.max.map_or(defaults.max, Duration::as_seconds),
        backend_max: file
            .backends
            .into_iter()
            .filter_map(|(name, b)| b.max.map(|m| (name, m.as_seconds())))
            .collect(),
    }
}

/// The `plugins` section of the configuration file (`config`, else the default path), for the
/// CLI's plugin commands, which read the same file as the server.
pub fn plugin_config(
    config: Option<PathBuf>,
    env: &Environment,
) -> Result<FilePlugins, ConfigError> {
    let args = ServerArgs {
        config,
        ..ServerArgs::default()
    };
    Ok(load_file(&args, env)?.0.plugins)
}

/// Reads the configuration file; returns its contents and a " (in FILE)" suffix for
/// messages about values that came from it.
/// The file's settings, the " (in FILE …)" suffix for messages, and the file's path when one
/// was read.
type Loaded = (FileConfig, String, Option<PathBuf>);

fn load_file(args: &ServerArgs, env: &Environment) -> Result<Loaded, ConfigError> {
    let (path, explicit) = match &args.config {
        Some(path) => (Some(path.clone()), true),
        None => (env.default_config_file(), false),
    };
    let Some(path) = path else {
        return Ok((FileConfig::default(), String::new(), None));
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok((FileConfig::default(), String::new(), None));
        }
        Err(e) => {
            return Err(ConfigError(format!(
                "cannot read configuration file {}: {e}",
                path.display()
            )));
        }
    };
    let file = toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "invalid configuration file {}: {}",
            path.display(),
            e.to_string().trim_end()
        ))
    })?;
    let source = format!(" (in {} or the environment)", path.display());
    Ok((file, source, Some(path)))
}

fn oidc_settings(file: &FileOidc, source: &str) -> Result<OidcSettings, ConfigError> {
    let alg = file.alg.clone().unwrap_or_else(|| "EdDSA".to_owned());
    if !SIGNING_ALGS.contains(&alg.as_str()) {
        return Err(ConfigError(format!(
            "oidc.alg{source}: '{alg}' is not offered; use EdDSA (default), ES256 or RS256"
        )));
    }
    let token_ttl = file.token_ttl.map_or(3_600, Duration::as_seconds);
    if token_ttl > 86_400 {
        return Err(ConfigError(format!("oidc.token_ttl{source}: at most 24h")));
    }
    let rotation_grace = file
        .rotation_grace
        .map_or(86_400, Duration::as_seconds)
        .max(token_ttl);
    let rotate_every = match file.rotate_every.as_deref().map(str::trim) {
        None => Some(30 * 86_400),
        Some("0") => None,
        Some(text) => Some(
            Duration::parse(text)
                .map_err(|e| ConfigError(format!("oidc.rotate_every{source}: {e}")))?
                .as_seconds(),
        ),
    };
    Ok(OidcSettings {
        alg,
        token_ttl,
        rotation_grace,
        rotate_every,
    })
}

/// Reads the policies and trusts of the configuration file again (SIGHUP); any error leaves
/// the caller with the sets it had.
pub fn reload_rules(path: &Path) -> Result<(PolicySet, TrustSet), ConfigError> {
    let args = ServerArgs {
        config: Some(path.to_owned()),
        ..ServerArgs::default()
    };
    let (file, source, _) = load_file(&args, &Environment::current())?;
    let policies = PolicySet::new(file.policies)
        .map_err(|e| ConfigError(format!("invalid policies{source}: {e}")))?;
    Ok((policies, trust_set(file.trust, &source)?))
}

fn trust_set(trusts: Vec<Trust>, source: &str) -> Result<TrustSet, ConfigError> {
    TrustSet::new(trusts).map_err(|e| ConfigError(format!("invalid [[trust]] tables{source}: {e}")))
}

fn check_database_url(url: &str, source: &str) -> Result<(), ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "invalid database_url{source}: only postgres:// URLs are supported (leave it empty for SQLite in the data directory)"
        )))
    }
}

fn check_issuer(issuer: &str, source: &str) -> Result<String, ConfigError> {
    creddy_core::trust::check_url_allowing("issuer", issuer, PlainHttp::Anywhere)
        .map_err(|e| ConfigError(format!("invalid server.issuer{source}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_without_home() -> Environment {
        Environment {
            is_root: false,
            home: None,
        }
    }

    fn env_with_home() -> Environment {
        Environment {
            is_root: false,
            home: Some("/home/u".into()),
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn defaults_depend_on_the_user() {
        let root = Environment {
            is_root: true,
            home: Some("/root".into()),
        };
        assert_eq!(root.default_data_dir(), Some("/var/lib/creddy".into()));
        assert_eq!(
            root.default_config_file(),
            Some("/etc/creddy/creddy.toml".into())
        );
        let user = Environment {
            is_root: false,
            home: Some("/home/u".into()),
        };
        assert_eq!(
            user.default_data_dir(),
            Some("/home/u/.local/share/creddy".into())
        );
        let s = Settings::resolve(ServerArgs::default(), &user).expect("defaults");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.issuer, None);
        assert_eq!(s.database_url, None);
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file = write(
            "[server]\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"/srv/creddy\"\nissuer = \"https://id.example.com/\"\n",
        );
        let args = ServerArgs {
            config: Some(file.path().into()),
            listen: Some("0.0.0.0:8500".into()),
            ..ServerArgs::default()
        };
        let s = Settings::resolve(args, &env_with_home()).expect("valid");
        assert_eq!(s.listen.to_string(), "0.0.0.0:8500");
        assert_eq!(s.data_dir, PathBuf::from("/srv/creddy"));
        assert_eq!(s.issuer.as_deref(), Some("https://id.example.com"));
    }

    #[test]
    fn revocation_concurrency_is_bounded_and_defaults_to_eight() {
        let parse = |text: &str| {
            let file = write(text);
            let args = ServerArgs {
                config: Some(file.path().into()),
                ..ServerArgs::default()
            };
            Settings::resolve(args, &env_with_home())
        };
        assert_eq!(parse("").expect("valid").revocation.concurrency, 8);
        let raised = parse("revocation = { concurrency = 64 }\n").expect("valid");
        assert_eq!(raised.revocation.concurrency, 64);
        for bad in ["0", "257"] {
            let e =
                parse(&format!("revocation = {{ concurrency = {bad} }}\n")).expect_err("refused");
            assert!(e.to_string().contains("revocation.concurrency"), "{e}");
            assert!(e.to_string().contains("1 to 256"), "{e}");
        }
    }

    #[test]
    fn a_backend_may_have_its_own_revocation_horizon() {
        let file = write(
            "revocation = { horizon = \"2h\", backends = { daytona = { horizon = \"2d\" } } }\n",
        );
        let args = ServerArgs {
            config: Some(file.path().into()),
            ..ServerArgs::default()
        };
        let s = Settings::resolve(args, &env_with_home()).expect("valid");
        assert_eq!(s.revocation.horizon_of("daytona"), 2 * 86_400);
        assert_eq!(s.revocation.horizon_of("other"), 7_200);
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let file = write("[server]\nlisten = \"127.0.0.1:9000\"\nlisen = \"x\"\n");
        let args = ServerArgs {
            config: Some(file.path().into()),
            ..ServerArgs::default()
        };
        let err = Settings::resolve(args, &env_without_home())
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains(&file.path().display().to_string()), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_a_remedy() {
        let dir = || Some(PathBuf::from("/tmp/creddy"));
        let cases = [
            (
                ServerArgs {
                    listen: Some("localhost".into()),
                    ..Default::default()
                },
                "IP:PORT",
            ),
            (
                ServerArgs {
                    database_url: Some("mysql://x".into()),
                    data_dir: dir(),
                    ..Default::default()
                },
                "postgres://",
            ),
            (
                ServerArgs {
                    issuer: Some("ftp://x".into()),
                    data_dir: dir(),
                    ..Default::default()
                },
                "https://",
            ),
            (
                ServerArgs {
                    issuer: Some("https://me@id.example.com".into()),
                    data_dir: dir(),
                    ..Default::default()
                },
                "invalid server.issuer: issuer 'https://me@id.example.com' holds a user",
            ),
            (
                ServerArgs {
                    config: Some("/nonexistent/creddy.toml".into()),
                    ..Default::default()
                },
                "cannot read",
            ),
            (ServerArgs::default(), "HOME is not set"),
        ];
        for (args, expected) in cases {
            let err = Settings::resolve(args, &env_without_home())
                .expect_err(expected)
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn ttl_plugin_and_limit_sections_are_read() {
        let file = write(
            "ttl = { min = \"2m\", max = \"12h\", backends = { daytona = { max = \"8h\" } } }\n\
             plugins = { dir = \"/opt/plugins\", allow_unsigned = true }\n\
             limits = { max_active_leases_per_agent = 5, token_per_client = \"30/minute\", vend_per_agent = \"100/hour\", request_per_agent = \"3/hour\", max_connections = 200, max_connections_per_ip = 20 }\n\
             enrollment = { max_open_amendments = 2 }\n\
             secrets = { key_file = \"/etc/creddy/master.key\" }\n",
        );
        let args = ServerArgs {
            config: Some(file.path().into()),
            data_dir: Some("/tmp/d".into()),
            ..ServerArgs::default()
        };
        let s = Settings::resolve(args, &env_without_home()).expect("valid");
        assert_eq!((s.ttl.min, s.ttl.default, s.ttl.max), (120, 600, 43_200));
        assert_eq!(s.ttl.max_for("daytona"), 8 * 3600);
        assert_eq!(s.ttl.max_for("other"), 43_200);
        assert_eq!(s.plugin_dir, PathBuf::from("/opt/plugins"));
        assert!(s.allow_unsigned_plugins);
        assert_eq!(s.max_active_leases_per_agent, 5);
        let rate = |count, window_seconds| Rate {
            count,
            window_seconds,
        };
        assert_eq!(s.limits.token_per_client, rate(30, 60));
        assert_eq!(s.limits.vend_per_agent, rate(100, 3_600));
        assert_eq!(s.limits.request_per_agent, rate(3, 3_600));
        assert_eq!(
            (s.limits.max_connections, s.limits.max_connections_per_ip),
            (200, 20)
        );
        assert_eq!(s.enrollment.max_open_amendments, 2);
        assert_eq!(s.key_file, Some(PathBuf::from("/etc/creddy/master.key")));
        let bad = write("ttl = { max = \"7 days\" }\n");
        let args = ServerArgs {
            config: Some(bad.path().into()),
            data_dir: Some("/tmp/d".into()),
            ..ServerArgs::default()
        };
        let err = Settings::resolve(args, &env_without_home())
            .expect_err("bad duration")
            .to_string();
        assert!(
            err.contains("invalid duration") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn the_example_file_in_the_repository_parses() {
        let example = include_str!("../../../creddy.example.toml");
        let parsed: Result<FileConfig, _> = toml::from_str(example);
        assert!(parsed.is_ok(), "{parsed:?}");
        let file = write(example);
        let args = ServerArgs {
            config: Some(file.path().into()),
            data_dir: Some("/tmp/d".into()),
            ..ServerArgs::default()
        };
        Settings::resolve(args, &env_with_home()).expect("the example file starts a server");
    }

    /// §18's example, verbatim; a bad trust stops the start naming the file and the trust,
    /// and SIGHUP's reader refuses it the same way.
    #[test]
    fn trusts_are_read_and_a_bad_one_names_itself() {
        let trust = r#"
[[trust]]
name      = "github"                                          # label; [a-z][a-z0-9-]{0,31}
issuer    = "https://token.actions.githubusercontent.com"     # must equal the token's iss
jwks_url  = ""            # default: jwks_uri of <issuer>/.well-known/openid-configuration
jwks_file = ""            # alternative to fetching (air-gapped)
audience  = "creddy"      # the token's aud must contain it
claims    = { repository = "acme/widgets", ref = "refs/heads/*" }   # every claim must match; * and ? globs
agent     = "gh-{repository}"      # agent name template over claims; characters outside the name grammar become "-"
scopes    = ["daytona:workspaces"]
token_ttl = "15m"         # lifetime of the creddy access token issued (max 1h)
max_ttl   = "1h"          # cap on credentials vended to these agents
"#;
        let resolve = |text: &str| {
            let file = write(text);
            let args = ServerArgs {
                config: Some(file.path().into()),
                data_dir: Some("/tmp/d".into()),
                ..ServerArgs::default()
            };
            let path = file.path().display().to_string();
            (
                Settings::resolve(args, &env_with_home()),
                reload_rules(file.path()),
                path,
            )
        };
        let (settings, reloaded, _) = resolve(trust);
        let settings = settings.expect("§18 starts a server");
        assert_eq!(settings.trusts.all().len(), 1);
        assert_eq!(settings.trusts.all()[0].max_ttl, 3_600);
        assert_eq!(reloaded.expect("reloads").1, settings.trusts);
        let twice = format!("{trust}{trust}");
        let (settings, reloaded, path) = resolve(&twice);
        let error = settings.expect_err("two trusts of one name").to_string();
        assert!(error.contains("two trusts are named 'github'"), "{error}");
        assert!(error.contains(&path), "{error}");
        assert!(reloaded.is_err());
        let bad = trust.replace("gh-{repository}", "gh-{actor}");
        let (settings, _, _) = resolve(&bad);
        let error = settings.expect_err("unknown field").to_string();
        assert!(
            error.contains("trust 'github': unknown template field '{actor}'"),
            "{error}"
        );
        assert!(error.contains("line "), "{error}");
    }

    /// The specification's own example (§14), verbatim: every key is read.
    #[test]
    fn the_specification_example_is_read() {
        let spec = r#"
secrets    = { key_file = "" }
ttl        = { min = "1m", default = "10m", max = "24h", backends = { daytona = { max = "8h" } } }
oidc       = { alg = "EdDSA", token_ttl = "1h", rotate_every = "30d", rotation_grace = "24h" }
enrollment = { pending_ttl = "24h", pickup_ttl = "1h", max_pending = 1000 }
agents     = { inactivity_days = 0 }
revocation = { horizon = "24h", base_delay = "10s", max_delay = "1h", backends = { daytona = { horizon = "48h" } } }
limits     = { enroll_per_ip = "20/minute", token_per_client = "120/minute", vend_per_agent = "600/minute", max_active_leases_per_agent = 100 }
plugins    = { dir = "", registry = "https://plugins.creddy.dev", trusted_keys = [], allow_unsigned = false }
audit      = { retention_days = 0 }

[server]
listen = "127.0.0.1:8400"
data_dir = ""
database_url = ""
issuer = ""
tls_cert_file = ""
tls_key_file = ""
trusted_proxies = []
"#;
        let file = write(spec);
        let args = ServerArgs {
            config: Some(file.path().into()),
            data_dir: Some("/tmp/d".into()),
            ..ServerArgs::default()
        };
        let s = Settings::resolve(args, &env_with_home()).expect("§14 starts a server");
        assert_eq!(s.agents_inactivity_days, 0);
        assert_eq!(s.audit_retention_days, 0);
        assert_eq!(
            s.limits.vend_per_agent,
            Rate {
                count: 600,
                window_seconds: 60
            }
        );
        for (text, reason) in [
            (
                "[server]\ntls_cert_file = \"/etc/creddy/cert.pem\"\n",
                "give both (--tls-cert and --tls-key) or neither",
            ),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "server.trusted_proxies",
            ),
        ] {
            let file = write(text);
            let args = ServerArgs {
                config: Some(file.path().into()),
                data_dir: Some("/tmp/d".into()),
                ..ServerArgs::default()
            };
            let err = Settings::resolve(args, &env_with_home())
                .expect_err(reason)
                .to_string();
            assert!(err.contains(reason), "{err}");
        }
    }
}

//! The SDK: implement [`Plugin`], call [`run`] from `main`.
//!
//! [`run`] serves the protocol when the first argument is `serve` (as the host starts it) and
//! otherwise offers the standalone commands, so a plugin can be tried without a server:
//!
//! ```text
//! creddy-NAME info | scopes | schema | constraints
//! creddy-NAME validate --config FILE
//! creddy-NAME get --config FILE --scope S [--scope S…] --ttl D [--agent-name N] [--agent-id I] [--lease-id L]
//! creddy-NAME revoke --config FILE --id X
//! ```
//!
//! The serve loop answers `hello` first, runs up to 16 calls concurrently, turns a panic in
//! one call into an `internal_error` answer instead of a silent hang, and never echoes
//! `configure` parameters (they hold the master credential) in an error.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use creddy_core::secret::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncWrite, BufReader};
use tokio::sync::{Mutex, RwLock, Semaphore};

use crate::frame::{FrameError, read_frame, write_frame};
use crate::protocol::{
    AgentRef, Capabilities, ConfigField, ConfigSchema, ConfigureParams, Constraints, Credential,
    Empty, ErrorData, ErrorKind, GetCredentialParams, HelloParams, HelloResult,
    MAX_CONCURRENT_CALLS, MAX_FRAME, MatchScopeParams, MatchScopeResult, PROTOCOL_VERSIONS,
    PluginInfo, Request, Response, RevokeParams, RevokeResult, RpcError, ScopeInfo, ScopesResult,
    ValidateResult, method,
};

/// An error a plugin reports: a kind, a message for people, and optionally a remedy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The kind.
    pub kind: ErrorKind,
    /// The message; never a secret or a raw upstream body.
    pub message: String,
    /// What to do about it.
    pub remedy: Option<String>,
    /// Whether a retry may help (defaults from the kind).
    pub retryable: bool,
    /// Seconds the upstream asked to wait before retrying.
    pub retry_after: Option<u64>,
}

/// A configuration's text field, trimmed; `None` when absent, not a string or blank.
pub fn config_text<'a>(config: &'a Value, key: &str) -> Option<&'a str> {
    config
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl PluginError {
    /// An `invalid_config` error.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(crate::protocol::ErrorKind::InvalidConfig, message)
    }

    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            remedy: None,
            retryable: kind.is_retryable(),
            retry_after: None,
        }
    }

    /// Records how many seconds the upstream asked to wait before retrying.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a remedy.
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    /// Overrides whether a retry may help.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    fn into_rpc(self) -> RpcError {
        RpcError {
            code: self.kind.code(),
            message: self.message,
            data: Some(ErrorData {
                kind: self.kind,
                retryable: self.retryable,
                retry_after: self.retry_after,
                remedy: self.remedy,
            }),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a plugin implements. `configure` turns a configuration into a `Backend` value that
/// the SDK keeps and hands to the calls that need it.
pub trait Plugin: Send + Sync + 'static {
    /// A configured backend.
    type Backend: Send + Sync + 'static;

    /// Name, version, description, minimum creddy version.
    fn info(&self) -> PluginInfo;
    /// What the plugin can do.
    fn capabilities(&self) -> Capabilities;
    /// The scope forms it understands.
    fn scopes(&self) -> Vec<ScopeInfo>;
    /// Its configuration fields.
    fn config_schema(&self) -> Vec<ConfigField>;
    /// Its TTL limits.
    fn constraints(&self) -> Constraints;
    /// Checks a configuration (defaults applied; it holds the master credential) and
    /// prepares a backend.
    fn configure(
        &self,
        backend: &str,
        config: Secret<Value>,
    ) -> impl Future<Output = Result<Self::Backend, PluginError>> + Send;
    /// Probes the upstream with the configured credential; returns warnings.
    fn validate(
        &self,
        backend: &Self::Backend,
    ) -> impl Future<Output = Result<Vec<String>, PluginError>> + Send;
    /// Mints a credential.
    fn get_credential(
        &self,
        backend: &Self::Backend,
        request: GetCredentialParams,
    ) -> impl Future<Output = Result<Credential, PluginError>> + Send;
    /// Revokes a credential; "not found" upstream is `already_gone`, not an error.
    fn revoke_credential(
        &self,
        backend: &Self::Backend,
        request: RevokeParams,
    ) -> impl Future<Output = Result<RevokeResult, PluginError>> + Send;
    /// Checks and normalises a scope whose first segment is the plugin's name.
    fn match_scope(&self, scope: &str) -> MatchScopeResult;
    /// The route policy under which creddy may proxy calls to the upstream (§20), for a
    /// plugin that serves proxy mode; none by default.
    fn proxy_policy(&self) -> Option<crate::route_policy::RoutePolicy> {
        None
    }
    /// Where proxied calls of `backend` go, with the master credential when `inject` is
    /// `master` (§20); refused by default (a plugin without a route policy serves no proxy).
    fn proxy_target(
        &self,
        backend: &Self::Backend,
        inject: crate::protocol::Inject,
    ) -> impl Future<Output = Result<crate::protocol::ProxyTarget, PluginError>> + Send {
        let _ = (backend, inject);
        async {
            Err(PluginError::new(
                ErrorKind::InvalidRequest,
                "this plugin does not serve proxy mode",
            ))
        }
    }
}

/// Runs the plugin: `serve` for the host, anything else for the standalone commands.
pub fn run<P: Plugin>(plugin: P) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let plugin = Arc::new(plugin);
    match args.first().map(String::as_str) {
        Some("serve") => runtime.block_on(serve(plugin)),
        _ => runtime.block_on(standalone(plugin, args)),
    }
}

/// The state of a served plugin.
struct Served<P: Plugin> {
    plugin: Arc<P>,
    greeted: RwLock<bool>,
    backend: RwLock<Option<Arc<P::Backend>>>,
}

async fn serve<P: Plugin>(plugin: Arc<P>) -> ExitCode {
    let served = Arc::new(Served {
        plugin,
        greeted: RwLock::new(false),
        backend: RwLock::new(None),
    });
    let stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let mut stdin = BufReader::new(tokio::io::stdin());
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS));
    loop {
        let line = match read_frame(&mut stdin, MAX_FRAME).await {
            Ok(Some(line)) => line,
            Ok(None) | Err(FrameError::Io(_)) => return ExitCode::SUCCESS,
            Err(e @ FrameError::TooLarge { .. }) => {
                let error = PluginError::new(ErrorKind::ParseError, e.to_string());
                send(&stdout, &Response::err(None, error.into_rpc())).await;
                continue;
            }
        };
        let request: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(_) => {
                let error = PluginError::new(
                    ErrorKind::ParseError,
                    "the message is not a JSON-RPC request",
                );
                send(&stdout, &Response::err(None, error.into_rpc())).await;
                continue;
            }
        };
        if request.method == method::SHUTDOWN {
            // Let calls in flight finish before answering and leaving.
            let _ = slots.acquire_many(MAX_CONCURRENT_CALLS as u32).await;
            send(&stdout, &Response::ok(request.id, serde_json::json!({}))).await;
            return ExitCode::SUCCESS;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return ExitCode::SUCCESS;
        };
        let served = served.clone();
        let stdout = stdout.clone();
        tokio::spawn(async move {
            let id = request.id;
            // A panic inside the call becomes an answer rather than a hung request.
            let response = match tokio::spawn(dispatch(served, request)).await {
                Ok(response) => response,
                Err(_) => Response::err(
                    Some(id),
                    PluginError::new(
                        ErrorKind::InternalError,
                        "the plugin failed while handling the call",
                    )
                    .into_rpc(),
                ),
            };
            send(&stdout, &response).await;
            drop(permit);
        });
    }
}

async fn send<W: AsyncWrite + Unpin>(out: &Mutex<W>, response: &Response) {
    if let Ok(text) = serde_json::to_string(response) {
        let mut out = out.lock().await;
        let _ = write_frame(&mut *out, &text).await;
    }
}

fn params<T: DeserializeOwned>(request: &Request, describe: bool) -> Result<T, PluginError> {
    let value = if request.params.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        request.params.clone()
    };
    serde_json::from_value(value).map_err(|e| {
        let detail = if describe {
            format!(": {e}")
        } else {
            String::new()
        };
        PluginError::new(
            ErrorKind::InvalidParams,
            format!("invalid parameters for {}{detail}", request.method),
        )
    })
}

fn to_result<T: Serialize>(value: T) -> Result<Value, PluginError> {
    serde_json::to_value(value).map_err(|e| {
        PluginError::new(
            ErrorKind::InternalError,
            format!("cannot encode the result: {e}"),
        )
    })
}

async fn dispatch<P: Plugin>(served: Arc<Served<P>>, request: Request) -> Response {
    let id = request.id;
    match call(&served, &request).await {
        Ok(result) => Response::ok(id, result),
        Err(error) => Response::err(Some(id), error.into_rpc()),
    }
}

async fn configured<P: Plugin>(served: &Served<P>) -> Result<Arc<P::Backend>, PluginError> {
    served.backend.read().await.clone().ok_or_else(|| {
        PluginError::new(
            ErrorKind::InvalidConfig,
            "the plugin has not been configured",
        )
        .with_remedy("the host must call configure first")
    })
}

async fn call<P: Plugin>(served: &Served<P>, request: &Request) -> Result<Value, PluginError> {
    let plugin = &served.plugin;
    if request.method == method::HELLO {
        let hello: HelloParams = params(request, true)?;
        let version = negotiate(&hello.protocol_versions)?;
        *served.greeted.write().await = true;
        return to_result(HelloResult {
            protocol_version: version,
            plugin: plugin.info(),
            capabilities: plugin.capabilities(),
            proxy: plugin.proxy_policy(),
        });
    }
    if !*served.greeted.read().await {
        return Err(PluginError::new(
            ErrorKind::InvalidRequest,
            "hello must be the first call",
        ));
    }
    match request.method.as_str() {
        method::INFO => to_result(plugin.info()),
        method::SCOPES => to_result(ScopesResult {
            scopes: plugin.scopes(),
        }),
        method::CONFIG_SCHEMA => to_result(ConfigSchema {
            fields: plugin.config_schema(),
        }),
        method::CONSTRAINTS => to_result(plugin.constraints()),
        method::CONFIGURE => {
            // Never describe the parameters: they hold the master credential.
            let configure: ConfigureParams = params(request, false)?;
            let backend = plugin
                .configure(&configure.backend, configure.config)
                .await?;
            *served.backend.write().await = Some(Arc::new(backend));
            to_result(Empty {})
        }
        method::VALIDATE => {
            let backend = configured(served).await?;
            to_result(ValidateResult {
                warnings: plugin.validate(&backend).await?,
            })
        }
        method::GET_CREDENTIAL => {
            let get: GetCredentialParams = params(request, true)?;
            let backend = configured(served).await?;
            to_result(plugin.get_credential(&backend, get).await?)
        }
        method::REVOKE_CREDENTIAL => {
            let revoke: RevokeParams = params(request, true)?;
            let backend = configured(served).await?;
            to_result(plugin.revoke_credential(&backend, revoke).await?)
        }
        method::PROXY_TARGET => {
            let target: crate::protocol::ProxyTargetParams = params(request, true)?;
            let backend = configured(served).await?;
            to_result(plugin.proxy_target(&backend, target.inject).await?)
        }
        method::MATCH_SCOPE => {
            let m: MatchScopeParams = params(request, true)?;
            to_result(plugin.match_scope(&m.scope))
        }
        other => Err(PluginError::new(
            ErrorKind::MethodNotFound,
            format!(
                "unknown method '{}'",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// The newest version both sides speak.
fn negotiate(offered: &[u32]) -> Result<u32, PluginError> {
    PROTOCOL_VERSIONS
        .iter()
        .rev()
        .find(|v| offered.contains(v))
        .copied()
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::UnsupportedProtocol,
                format!("no common protocol version (plugin speaks {PROTOCOL_VERSIONS:?}, host offered {offered:?})"),
            )
            .with_remedy("upgrade creddy or the plugin so that they share a protocol version")
        })
}

const USAGE: &str = "usage:
  PLUGIN serve
  PLUGIN info | scopes | schema | constraints
  PLUGIN validate --config FILE
  PLUGIN get --config FILE --scope S [--scope S...] --ttl D [--agent-name N] [--agent-id I] [--lease-id L]
  PLUGIN revoke --config FILE --id X [--agent-name N] [--agent-id I] [--lease-id L]

FILE is the JSON object the host would pass to configure; D is a duration such as 10m or 1h.";

/// Flags of the standalone commands.
#[derive(Debug, Default)]
struct Flags {
    config: Option<String>,
    scopes: Vec<String>,
    ttl: Option<String>,
    id: Option<String>,
    agent_name: Option<String>,
    agent_id: Option<String>,
    lease_id: Option<String>,
}

fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut flags = Flags::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--config" => flags.config = Some(value()?),
            "--scope" => flags.scopes.push(value()?),
            "--ttl" => flags.ttl = Some(value()?),
            "--id" => flags.id = Some(value()?),
            "--agent-name" => flags.agent_name = Some(value()?),
            "--agent-id" => flags.agent_id = Some(value()?),
            "--lease-id" => flags.lease_id = Some(value()?),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(flags)
}

/// A standalone failure: exit 2 for usage, 1 for plugin or upstream errors.
enum Failure {
    Usage(String),
    Plugin(PluginError),
}

impl From<PluginError> for Failure {
    fn from(e: PluginError) -> Self {
        Failure::Plugin(e)
    }
}

async fn standalone<P: Plugin>(plugin: Arc<P>, args: Vec<String>) -> ExitCode {
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match standalone_command(plugin.as_ref(), command, &args[1..]).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("Error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Plugin(e)) => {
            eprintln!("Error: {}", e.message);
            if let Some(remedy) = &e.remedy {
                eprintln!("Hint: {remedy}");
            }
            ExitCode::from(1)
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Plugin(PluginError::new(ErrorKind::InternalError, e.to_string())))?;
    println!("{text}");
    Ok(())
}

async fn standalone_command<P: Plugin>(
    plugin: &P,
    command: &str,
    rest: &[String],
) -> Result<(), Failure> {
    match command {
        "info" => return print_json(&plugin.info()),
        "scopes" => {
            return print_json(&ScopesResult {
                scopes: plugin.scopes(),
            });
        }
        "schema" => {
            return print_json(&ConfigSchema {
                fields: plugin.config_schema(),
            });
        }
        "constraints" => return print_json(&plugin.constraints()),
        "help" | "--help" | "-h" => {
            eprintln!("{USAGE}");
            return Ok(());
        }
        "validate" | "get" | "revoke" => {}
        other => return Err(Failure::Usage(format!("unknown command '{other}'"))),
    }
    let flags = parse_flags(rest).map_err(Failure::Usage)?;
    let backend = configure_from_file(plugin, flags.config.as_deref()).await?;
    let agent = AgentRef {
        id: flags
            .agent_id
            .clone()
            .unwrap_or_else(|| "ag_standalone".into()),
        name: flags
            .agent_name
            .clone()
            .unwrap_or_else(|| "standalone".into()),
        scopes: Vec::new(),
    };
    let lease_id = flags.lease_id.clone().unwrap_or_else(|| {
        creddy_core::ids::LeaseId::generate(creddy_core::Clock::now(&creddy_core::SystemClock))
            .to_string()
    });
    match command {
        "validate" => {
            println!("ok");
            for warning in plugin.validate(&backend).await? {
                println!("warning: {warning}");
            }
            Ok(())
        }
        "get" => {
            if flags.scopes.is_empty() {
                return Err(Failure::Usage("get needs at least one --scope".into()));
            }
            let ttl = flags
                .ttl
                .as_deref()
                .ok_or_else(|| Failure::Usage("get needs --ttl".into()))?;
            let ttl =
                creddy_core::Duration::parse(ttl).map_err(|e| Failure::Usage(e.to_string()))?;
            let request = GetCredentialParams {
                agent: AgentRef {
                    scopes: flags.scopes.clone(),
                    ..agent
                },
                scopes: flags.scopes,
                ttl: ttl.as_seconds(),
                lease_id,
                parameters: Default::default(),
            };
            print_json(&plugin.get_credential(&backend, request).await?)
        }
        _ => {
            let id = flags
                .id
                .ok_or_else(|| Failure::Usage("revoke needs --id".into()))?;
            let request = RevokeParams {
                external_id: Some(id),
                lease_id,
                agent,
            };
            let result = plugin.revoke_credential(&backend, request).await?;
            println!(
                "{}",
                if result.already_gone {
                    "already gone"
                } else {
                    "revoked"
                }
            );
            Ok(())
        }
    }
}

async fn configure_from_file<P: Plugin>(
    plugin: &P,
    path: Option<&str>,
) -> Result<P::Backend, Failure> {
    let path = path.ok_or_else(|| Failure::Usage("--config FILE is required".into()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {path}: {e}")))?;
    let mut config = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        _ => return Err(Failure::Usage(format!("{path} must hold a JSON object"))),
    };
    ConfigSchema {
        fields: plugin.config_schema(),
    }
    .apply_defaults(&mut config);
    Ok(plugin
        .configure("standalone", Secret::new(Value::Object(config)))
        .await?)
}

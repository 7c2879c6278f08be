//! A plugin for tests, built with the SDK, whose behaviour tests script.
//!
//! The fake upstream lives in the `state_dir` of its configuration: minted credentials are
//! recorded in `issued/`, revocations in `revoked/`. With `upstream = "memory"` it lives in
//! the plugin's memory instead and nothing is scripted: the zero-latency plugin of the
//! benchmarks (a file per mint and a read of `behavior.json` per call cost more than the
//! rest of the plugin). Otherwise, before each call the plugin reads
//! `behavior.json` there, e.g. `{"get_credential": "crash"}`, with modes `ok`, `hang`,
//! `crash`, `garbage`, `huge`, `slow:<ms>`, `fail:<error kind>` and `barrier:<n>[:<ms>]` (the call
//! waits until `n` calls are in flight together, and fails if they never are).
//!
//! What must happen before `configure` is chosen by the binary's file name instead: a name
//! containing `garbage` writes junk to stdout at start, `oldproto` answers `hello` with
//! protocol version 99, `exit` exits at once, `newer` demands creddy 99.0.0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use creddy_core::secret::Secret;
use creddy_core::{Clock, SystemClock};
use creddy_plugin::protocol::{
    Capabilities, ConfigField, Constraints, Credential, EnvSource, EnvVar, ErrorKind, FieldType,
    GetCredentialParams, MatchScopeResult, PluginInfo, RevokeParams, RevokeResult, ScopeInfo,
};
use creddy_plugin::sdk::{Plugin, PluginError, run};
use serde_json::Value;

struct TestPlugin {
    name: String,
    min_creddy_version: String,
}

struct Backend {
    state_dir: PathBuf,
    api_key: String,
    /// `Some` when the upstream lives in memory (`upstream = "memory"`): the external ids
    /// issued and not revoked yet. Nothing is scripted then.
    in_memory: Option<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Backend {
    /// Acts out the scripted behaviour of `method` (none for an upstream in memory).
    async fn act(&self, method: &str) -> Result<(), PluginError> {
        match self.in_memory {
            Some(_) => Ok(()),
            None => act(&self.state_dir, method).await,
        }
    }

    /// Records a minted credential.
    fn issue(&self, external_id: &str, scopes: &[String]) {
        match &self.in_memory {
            Some(issued) => {
                lock(issued).insert(external_id.to_owned());
            }
            None => {
                eprintln!("test plugin: minting {external_id}");
                let scopes = serde_json::to_string(scopes).unwrap_or_default();
                record(&self.state_dir, "issued", external_id, &scopes);
            }
        }
    }

    /// Revokes a credential; `true` when it was already gone (or never issued).
    fn revoke(&self, external_id: &str) -> bool {
        if let Some(issued) = &self.in_memory {
            return !lock(issued).remove(external_id);
        }
        let issued = self.state_dir.join("issued").join(external_id);
        let revoked = self.state_dir.join("revoked").join(external_id);
        let already_gone = !issued.exists() || revoked.exists();
        if !already_gone {
            record(&self.state_dir, "revoked", external_id, "");
        }
        already_gone
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn behavior(state_dir: &Path, method: &str) -> String {
    std::fs::read_to_string(state_dir.join("behavior.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v[method].as_str().map(str::to_owned))
        .unwrap_or_else(|| "ok".to_owned())
}

/// Acts out the scripted behaviour of `method`; `Ok` means "carry on normally".
async fn act(state_dir: &Path, method: &str) -> Result<(), PluginError> {
    let mode = behavior(state_dir, method);
    match mode.split_once(':') {
        Some(("slow", ms)) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(100))).await;
            Ok(())
        }
        Some(("barrier", spec)) => {
            let (n, within_ms) = spec.split_once(':').unwrap_or((spec, "30000"));
            let within = std::time::Duration::from_millis(within_ms.parse().unwrap_or(30_000));
            barrier(state_dir, n.parse().unwrap_or(2), within).await
        }
        Some(("fail", kind)) => {
            let kind: ErrorKind =
                serde_json::from_value(Value::from(kind)).unwrap_or(ErrorKind::InternalError);
            Err(PluginError::new(kind, format!("scripted {kind:?} failure"))
                .with_remedy("change behavior.json"))
        }
        _ => match mode.as_str() {
            "hang" => {
                tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
                Ok(())
            }
            "crash" => {
                eprintln!("test plugin: crashing as scripted");
                std::process::exit(101)
            }
            "garbage" => {
                println!("this is not JSON-RPC");
                Ok(())
            }
            "huge" => {
                println!("{}", "x".repeat(2 * 1024 * 1024));
                Ok(())
            }
            _ => Ok(()),
        },
    }
}

/// Waits until `n` calls have arrived here (each leaves a file in `barrier/`); fails after
/// `within` (30 s unless `barrier:<n>:<ms>`) with how many did, so calls the host
/// serialises fail instead of passing.
async fn barrier(
    state_dir: &Path,
    n: usize,
    within: std::time::Duration,
) -> Result<(), PluginError> {
    let dir = state_dir.join("barrier");
    let failed = |e: std::io::Error| PluginError::new(ErrorKind::InternalError, e.to_string());
    std::fs::create_dir_all(&dir).map_err(failed)?;
    std::fs::write(dir.join(random_hex()), "").map_err(failed)?;
    let deadline = std::time::Instant::now() + within;
    loop {
        let arrived = std::fs::read_dir(&dir).map_err(failed)?.count();
        if arrived >= n {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(PluginError::new(
                ErrorKind::UpstreamUnavailable,
                format!("only {arrived} of {n} calls were in flight together"),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    creddy_core::secret::fill_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record(dir: &Path, sub: &str, name: &str, content: &str) {
    let dir = dir.join(sub);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(name), content);
}

impl Plugin for TestPlugin {
    type Backend = Backend;

    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name.clone(),
            version: "0.1.0".into(),
            description: "Scriptable plugin for creddy's tests".into(),
            min_creddy_version: self.min_creddy_version.clone(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            revoke: true,
            self_expiring: false,
        }
    }

    fn scopes(&self) -> Vec<ScopeInfo> {
        vec![ScopeInfo {
            pattern: format!("{}[:read]", self.name),
            description: "full or read-only access".into(),
            examples: vec![self.name.clone(), format!("{}:read", self.name)],
        }]
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        let field = |name: &str, field_type, required, default: Option<&str>| ConfigField {
            name: name.into(),
            field_type,
            description: format!("the {name}"),
            required,
            default: default.map(str::to_owned),
        };
        vec![
            field("api_key", FieldType::Secret, true, None),
            field("state_dir", FieldType::String, true, None),
            field("note", FieldType::String, false, Some("hello")),
            field("items", FieldType::Array, false, Some("a,b")),
            field("upstream", FieldType::String, false, Some("files")),
        ]
    }

    fn constraints(&self) -> Constraints {
        Constraints {
            min_ttl: Some(60),
            max_ttl: Some(86_400),
            default_ttl: Some(600),
            description: "1m to 24h".into(),
        }
    }

    async fn configure(
        &self,
        _backend: &str,
        config: Secret<Value>,
    ) -> Result<Backend, PluginError> {
        let config = config.expose();
        let text = |key: &str| {
            config[key]
                .as_str()
                .map(str::to_owned)
                .filter(|s| !s.is_empty())
        };
        let api_key = text("api_key").ok_or_else(|| {
            PluginError::new(
                ErrorKind::InvalidConfig,
                "api_key must be a non-empty string",
            )
        })?;
        let state_dir = text("state_dir")
            .ok_or_else(|| PluginError::new(ErrorKind::InvalidConfig, "state_dir is required"))?;
        let in_memory = match text("upstream").as_deref() {
            None | Some("files") => None,
            Some("memory") => Some(std::sync::Mutex::default()),
            Some(other) => {
                return Err(PluginError::new(
                    ErrorKind::InvalidConfig,
                    format!("upstream must be files or memory, not {other}"),
                ));
            }
        };
        let backend = Backend {
            state_dir: PathBuf::from(state_dir),
            api_key,
            in_memory,
        };
        backend.act("configure").await?;
        Ok(backend)
    }

    async fn validate(&self, backend: &Backend) -> Result<Vec<String>, PluginError> {
        backend.act("validate").await?;
        if backend.api_key == "wrong" {
            return Err(PluginError::new(ErrorKind::UpstreamAuth, "invalid API key")
                .with_remedy("use a valid key"));
        }
        Ok(vec!["this is a test plugin".into()])
    }

    async fn get_credential(
        &self,
        backend: &Backend,
        request: GetCredentialParams,
    ) -> Result<Credential, PluginError> {
        backend.act("get_credential").await?;
        let value = format!("tp_{}", random_hex());
        let external_id = format!("key-{}", request.lease_id);
        let expires = SystemClock.now().plus_seconds(request.ttl);
        backend.issue(&external_id, &request.scopes);
        let env_names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("api_url".to_owned(), "http://upstream.test".to_owned());
        metadata.insert("env_names".to_owned(), env_names.join(","));
        Ok(Credential {
            value: Secret::new(value),
            expires_at: expires.to_rfc3339(),
            external_id: Some(external_id),
            metadata,
            env: vec![
                EnvVar {
                    name: "TEST_PLUGIN_TOKEN".into(),
                    source: EnvSource::Value,
                    key: None,
                },
                EnvVar {
                    name: "TEST_PLUGIN_URL".into(),
                    source: EnvSource::Metadata,
                    key: Some("api_url".into()),
                },
            ],
        })
    }

    async fn revoke_credential(
        &self,
        backend: &Backend,
        request: RevokeParams,
    ) -> Result<RevokeResult, PluginError> {
        if backend.in_memory.is_none() {
            // Every attempt that reached the plugin, before its scripted behaviour.
            record(&backend.state_dir, "revoke-calls", &request.lease_id, "");
        }
        backend.act("revoke_credential").await?;
        let external_id = request
            .external_id
            .unwrap_or_else(|| format!("key-{}", request.lease_id));
        let already_gone = backend.revoke(&external_id);
        Ok(RevokeResult {
            revoked: true,
            already_gone,
        })
    }

    fn match_scope(&self, scope: &str) -> MatchScopeResult {
        let ok = scope == self.name || scope == format!("{}:read", self.name);
        MatchScopeResult {
            matches: ok,
            normalized: scope.to_owned(),
        }
    }
}

/// Answers `hello` with protocol version 99, as a plugin from the future would.
fn speak_unknown_protocol() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_ok() {
        let id = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .unwrap_or(1);
        println!(
            "{}",
            serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"protocol_version": 99,
                "plugin": {"name": "future", "version": "9.0.0", "description": "", "min_creddy_version": "0.1.0"},
                "capabilities": {"revoke": true, "self_expiring": false}}})
        );
    }
    let _ = std::io::stdin().read_line(&mut line);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let exe = std::env::args().next().unwrap_or_default();
    let file = Path::new(&exe)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("creddy-test")
        .to_owned();
    let name = file.strip_prefix("creddy-").unwrap_or(&file).to_owned();
    let serving = std::env::args().nth(1).as_deref() == Some("serve");
    if serving && name.contains("exit") {
        return ExitCode::from(3);
    }
    if serving && name.contains("oldproto") {
        return speak_unknown_protocol();
    }
    if serving && name.contains("garbage") {
        println!("garbage before hello");
    }
    let min_creddy_version = if name.contains("newer") {
        "99.0.0"
    } else {
        "0.1.0"
    }
    .to_owned();
    run(TestPlugin {
        name,
        min_creddy_version,
    })
}

//! The wire protocol, version 1: JSON-RPC 2.0 messages and the method parameters and
//! results, as Rust types. The JSON Schema committed beside this crate
//! (`protocol.schema.json`) is generated from these types, so plugin authors in other
//! languages have a contract that cannot drift from the code.

use std::collections::BTreeMap;

use creddy_core::secret::Secret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol versions this build speaks.
pub const PROTOCOL_VERSIONS: &[u32] = &[1];
/// The largest frame (one line) either side accepts: 1 MiB.
pub const MAX_FRAME: usize = 1024 * 1024;
/// The most requests a host keeps in flight to one plugin; plugins must accept this many.
pub const MAX_CONCURRENT_CALLS: usize = 16;

/// The methods, with their names on the wire.
pub mod method {
    /// Handshake; always first.
    pub const HELLO: &str = "hello";
    /// Name, version, description, minimum creddy version.
    pub const INFO: &str = "info";
    /// The scope forms the plugin understands.
    pub const SCOPES: &str = "scopes";
    /// The configuration fields.
    pub const CONFIG_SCHEMA: &str = "config_schema";
    /// TTL limits.
    pub const CONSTRAINTS: &str = "constraints";
    /// Hands the backend's configuration (with the master credential) to the plugin.
    pub const CONFIGURE: &str = "configure";
    /// Checks the configuration against the upstream.
    pub const VALIDATE: &str = "validate";
    /// Mints a credential.
    pub const GET_CREDENTIAL: &str = "get_credential";
    /// Revokes a credential.
    pub const REVOKE_CREDENTIAL: &str = "revoke_credential";
    /// Checks and normalises a scope.
    pub const MATCH_SCOPE: &str = "match_scope";
    /// Where proxy mode forwards calls, and with `master` injection the credential (§20).
    pub const PROXY_TARGET: &str = "proxy_target";
    /// Asks the plugin to exit.
    pub const SHUTDOWN: &str = "shutdown";
}

/// A request from the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// A positive integer, unique among the requests in flight.
    pub id: u64,
    /// One of the methods.
    pub method: String,
    /// The method's parameters (an object; `{}` when it takes none).
    #[serde(default)]
    pub params: Value,
}

/// A response from the plugin: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id (null only when the request could not be parsed).
    pub id: Option<u64>,
    /// The method's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// A success.
    pub fn ok(id: u64, result: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(id),
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Option<u64>, error: RpcError) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcError {
    /// The JSON-RPC code (see [`ErrorKind::code`]).
    pub code: i64,
    /// A message for people; never a secret or a raw upstream body.
    pub message: String,
    /// The kind, whether a retry may help, and a remedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ErrorData>,
}

/// Structured error details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorData {
    /// The error kind's name, e.g. `upstream_auth`.
    pub kind: ErrorKind,
    /// Whether retrying later may succeed.
    pub retryable: bool,
    /// What the operator or agent can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// How many seconds the upstream asked to wait before the next attempt (its
    /// `Retry-After`), when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Error kinds and their JSON-RPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// -32700: the frame was not JSON.
    ParseError,
    /// -32600: not a valid request.
    InvalidRequest,
    /// -32601: unknown method.
    MethodNotFound,
    /// -32602: bad parameters.
    InvalidParams,
    /// -32603: a bug in the plugin.
    InternalError,
    /// -32001: the configuration is unusable.
    InvalidConfig,
    /// -32002: the upstream rejected the master credential.
    UpstreamAuth,
    /// -32003: the upstream did not find the organisation (or object).
    UpstreamNotFound,
    /// -32004: the master credential lacks a permission.
    UpstreamPermission,
    /// -32005: the upstream is rate limiting.
    UpstreamRateLimited,
    /// -32006: the upstream is down or timed out.
    UpstreamUnavailable,
    /// -32007: the plugin does not support this scope.
    ScopeNotSupported,
    /// -32008: the scope names an organisation the backend is not configured for.
    OrgNotConfigured,
    /// -32009: the operation is not supported.
    Unsupported,
    /// -32010: no common protocol version.
    UnsupportedProtocol,
    /// -32011: the upstream refused the request.
    UpstreamRejected,
}

impl ErrorKind {
    const ALL: [ErrorKind; 16] = [
        ErrorKind::ParseError,
        ErrorKind::InvalidRequest,
        ErrorKind::MethodNotFound,
        ErrorKind::InvalidParams,
        ErrorKind::InternalError,
        ErrorKind::InvalidConfig,
        ErrorKind::UpstreamAuth,
        ErrorKind::UpstreamNotFound,
        ErrorKind::UpstreamPermission,
        ErrorKind::UpstreamRateLimited,
        ErrorKind::UpstreamUnavailable,
        ErrorKind::ScopeNotSupported,
        ErrorKind::OrgNotConfigured,
        ErrorKind::Unsupported,
        ErrorKind::UnsupportedProtocol,
        ErrorKind::UpstreamRejected,
    ];

    /// The JSON-RPC error code.
    pub fn code(self) -> i64 {
        match self {
            ErrorKind::ParseError => -32700,
            ErrorKind::InvalidRequest => -32600,
            ErrorKind::MethodNotFound => -32601,
            ErrorKind::InvalidParams => -32602,
            ErrorKind::InternalError => -32603,
            ErrorKind::InvalidConfig => -32001,
            ErrorKind::UpstreamAuth => -32002,
            ErrorKind::UpstreamNotFound => -32003,
            ErrorKind::UpstreamPermission => -32004,
            ErrorKind::UpstreamRateLimited => -32005,
            ErrorKind::UpstreamUnavailable => -32006,
            ErrorKind::ScopeNotSupported => -32007,
            ErrorKind::OrgNotConfigured => -32008,
            ErrorKind::Unsupported => -32009,
            ErrorKind::UnsupportedProtocol => -32010,
            ErrorKind::UpstreamRejected => -32011,
        }
    }

    /// The kind of a JSON-RPC code, for errors that arrive without `data`.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Whether an error of this kind is worth retrying by default.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::UpstreamRateLimited | ErrorKind::UpstreamUnavailable
        )
    }
}

/// Who is calling, as the host tells the plugin in `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostInfo {
    /// `"creddy"`.
    pub name: String,
    /// The host's version.
    pub version: String,
}

/// `hello` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelloParams {
    /// Versions the host speaks.
    pub protocol_versions: Vec<u32>,
    /// The host.
    pub host: HostInfo,
}

/// What a plugin is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PluginInfo {
    /// The plugin's name (`daytona` for `creddy-daytona`).
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// One line for people.
    pub description: String,
    /// The oldest creddy that can run it.
    pub min_creddy_version: String,
}

/// What a plugin can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Capabilities {
    /// It can revoke what it issued.
    pub revoke: bool,
    /// The upstream itself refuses its credentials after `expires_at`.
    pub self_expiring: bool,
}

/// `hello` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelloResult {
    /// The version chosen from the host's list.
    pub protocol_version: u32,
    /// The plugin.
    pub plugin: PluginInfo,
    /// Its capabilities.
    pub capabilities: Capabilities,
    /// Its route policy when it serves proxy mode (§20); absent: it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::route_policy::RoutePolicy>,
}

/// One scope form a plugin understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScopeInfo {
    /// The pattern, e.g. `daytona:org:<org>`.
    pub pattern: String,
    /// What it grants.
    pub description: String,
    /// Examples.
    pub examples: Vec<String>,
}

impl ScopeInfo {
    /// A scope form: its pattern, what it grants, examples.
    pub fn new(pattern: &str, description: &str, examples: &[&str]) -> Self {
        Self {
            pattern: pattern.into(),
            description: description.into(),
            examples: examples.iter().map(|e| (*e).to_owned()).collect(),
        }
    }
}

/// `scopes` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScopesResult {
    /// The scope forms.
    pub scopes: Vec<ScopeInfo>,
}

/// The type of a configuration field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    String,
    /// An integer.
    Int,
    /// true or false.
    Bool,
    /// A file's contents, as text.
    File,
    /// Secret text: hidden when prompted, masked when shown, encrypted at rest.
    Secret,
    /// A list of strings.
    Array,
}

/// One configuration field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigField {
    /// The key in the configuration object.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// What it is.
    pub description: String,
    /// Whether it must be given.
    pub required: bool,
    /// The default, written as a string (arrays comma-separated).
    pub default: Option<String>,
}

impl ConfigField {
    /// A field: its key, type, description, whether it must be given, and its default.
    pub fn new(
        name: &str,
        field_type: FieldType,
        description: &str,
        required: bool,
        default: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            field_type,
            description: description.into(),
            required,
            default,
        }
    }
}

/// `config_schema` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigSchema {
    /// The fields.
    pub fields: Vec<ConfigField>,
}

/// `constraints` result: TTL limits in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Constraints {
    /// Shortest TTL.
    pub min_ttl: Option<u64>,
    /// Longest TTL.
    pub max_ttl: Option<u64>,
    /// TTL when none is asked for.
    pub default_ttl: Option<u64>,
    /// A note for people.
    pub description: String,
}

/// `configure` parameters. The only way a master credential reaches a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConfigureParams {
    /// The backend's name.
    pub backend: String,
    /// The configuration, schema defaults applied (it holds the master credential).
    #[schemars(with = "Value")]
    pub config: Secret<Value>,
}

/// `validate` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValidateResult {
    /// Problems that do not stop the backend from working.
    pub warnings: Vec<String>,
}

/// The agent a credential is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRef {
    /// `ag_…`.
    pub id: String,
    /// The agent's name.
    pub name: String,
    /// The agent's grants for this backend (only in `get_credential`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// `get_credential` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetCredentialParams {
    /// The agent.
    pub agent: AgentRef,
    /// The authorised requested scopes, first segment rewritten to the plugin's name.
    pub scopes: Vec<String>,
    /// TTL in seconds.
    pub ttl: u64,
    /// `cred_…`, also the basis of a traceable upstream name.
    pub lease_id: String,
    /// Reserved; empty in this release.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvSource {
    /// The credential itself.
    Value,
    /// A metadata entry named by `key`.
    Metadata,
}

/// An environment variable the plugin declares for `creddy run` and `-o env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Where its value comes from.
    pub source: EnvSource,
    /// The metadata key, for `source: metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `get_credential` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Credential {
    /// The secret.
    #[schemars(with = "String")]
    pub value: Secret<String>,
    /// When it stops working, RFC 3339 UTC.
    pub expires_at: String,
    /// The revocation handle (null only when the plugin cannot revoke).
    pub external_id: Option<String>,
    /// Non-secret facts, e.g. the API URL.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Environment variables for `creddy run`.
    #[serde(default)]
    pub env: Vec<EnvVar>,
}

/// `revoke_credential` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RevokeParams {
    /// The handle from `get_credential`, or null after a crash: then the plugin finds the
    /// upstream object from `lease_id` and `agent`.
    pub external_id: Option<String>,
    /// The lease.
    pub lease_id: String,
    /// The agent.
    pub agent: AgentRef,
}

/// `revoke_credential` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RevokeResult {
    /// Always true on success.
    pub revoked: bool,
    /// The upstream had no such object (which counts as revoked).
    pub already_gone: bool,
}

/// `match_scope` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MatchScopeParams {
    /// A scope whose first segment is the plugin's name.
    pub scope: String,
}

/// `match_scope` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MatchScopeResult {
    /// Whether the plugin supports the scope.
    pub matches: bool,
    /// Its canonical form.
    pub normalized: String,
}

/// Which credential proxy mode injects (§20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Inject {
    /// A credential minted per lease, as in vend mode, kept by creddy.
    Lease,
    /// The backend's master credential (opt-in).
    Master,
}

/// `proxy_target` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyTargetParams {
    /// Which credential will be injected.
    pub inject: Inject,
}

/// `proxy_target` result: where proxied calls go.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProxyTarget {
    /// The upstream API base, without a trailing `/`.
    pub base_url: String,
    /// Hosts whose toolbox URLs seen in answers may be routed (`*.daytona.io`, or exact
    /// `host[:port]`).
    pub toolbox_hosts: Vec<String>,
    /// The master credential, only for `inject: master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub credential: Option<Secret<String>>,
}

/// An empty object, for methods without parameters or results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// Every message of the protocol, for the generated JSON Schema.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct ProtocolV1 {
    request: Request,
    response: Response,
    hello_params: HelloParams,
    hello_result: HelloResult,
    info_result: PluginInfo,
    scopes_result: ScopesResult,
    config_schema_result: ConfigSchema,
    constraints_result: Constraints,
    configure_params: ConfigureParams,
    validate_result: ValidateResult,
    get_credential_params: GetCredentialParams,
    get_credential_result: Credential,
    revoke_credential_params: RevokeParams,
    revoke_credential_result: RevokeResult,
    match_scope_params: MatchScopeParams,
    match_scope_result: MatchScopeResult,
    proxy_target_params: ProxyTargetParams,
    proxy_target_result: ProxyTarget,
    empty: Empty,
}

/// The JSON Schema of protocol version 1, pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ProtocolV1);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.code()), "{kind:?}");
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(-1), None);
    }

    #[test]
    fn the_spec_example_exchange_parses() {
        let request: Request = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol_versions":[1],"host":{"name":"creddy","version":"0.1.0"}}}"#,
        )
        .expect("request");
        let hello: HelloParams = serde_json::from_value(request.params).expect("params");
        assert_eq!(hello.protocol_versions, vec![1]);
        let response: Response = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":1,"result":{"protocol_version":1,"plugin":{"name":"daytona","version":"0.1.0","description":"Ephemeral Daytona API keys","min_creddy_version":"0.1.0"},"capabilities":{"revoke":true,"self_expiring":true}}}"#,
        )
        .expect("response");
        let result: HelloResult =
            serde_json::from_value(response.result.expect("result")).expect("hello");
        assert!(result.capabilities.self_expiring);
    }

    #[test]
    fn secrets_in_messages_do_not_print() {
        let configure = ConfigureParams {
            backend: "b".into(),
            config: Secret::new(serde_json::json!({"api_key": "master-secret"})),
        };
        assert!(!format!("{configure:?}").contains("master-secret"));
        let credential = Credential {
            value: Secret::new("minted-secret".to_owned()),
            expires_at: "2026-01-01T00:00:00Z".into(),
            external_id: None,
            metadata: BTreeMap::new(),
            env: vec![],
        };
        assert!(!format!("{credential:?}").contains("minted-secret"));
    }

    #[test]
    fn the_committed_json_schema_is_current() {
        let committed = include_str!("../protocol.schema.json");
        assert!(
            committed == json_schema(),
            "protocol.schema.json is stale: regenerate it with `cargo run -p creddy-plugin --example write-schema`"
        );
    }
}

impl ConfigSchema {
    /// Fills in the schema's defaults for fields the configuration lacks, converting each
    /// default string to the field's JSON type (arrays are comma-separated).
    pub fn apply_defaults(&self, config: &mut serde_json::Map<String, Value>) {
        for field in &self.fields {
            if config.contains_key(&field.name) {
                continue;
            }
            if let Some(default) = &field.default {
                config.insert(field.name.clone(), field.field_type.parse(default));
            }
        }
    }

    /// The names of required fields that the configuration lacks (or holds empty).
    pub fn missing_required(&self, config: &serde_json::Map<String, Value>) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| f.required)
            .filter(|f| match config.get(&f.name) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            })
            .map(|f| f.name.clone())
            .collect()
    }
}

impl FieldType {
    /// The JSON value of a text form of this type: `int` and `bool` parse (falling back to
    /// the text when they do not), `array` splits on commas, the rest stay text.
    pub fn parse(self, text: &str) -> Value {
        match self {
            FieldType::Int => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(text)),
            FieldType::Bool => match text.trim() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::from(text),
            },
            FieldType::Array => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Value::from)
                    .collect(),
            ),
            FieldType::String | FieldType::File | FieldType::Secret => Value::from(text),
        }
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use serde_json::json;

    fn field(
        name: &str,
        field_type: FieldType,
        required: bool,
        default: Option<&str>,
    ) -> ConfigField {
        ConfigField {
            name: name.into(),
            field_type,
            description: String::new(),
            required,
            default: default.map(str::to_owned),
        }
    }

    #[test]
    fn defaults_take_their_field_types_and_never_override() {
        let schema = ConfigSchema {
            fields: vec![
                field("key", FieldType::Secret, true, None),
                field("url", FieldType::String, false, Some("https://x")),
                field("perms", FieldType::Array, false, Some("a, b,c")),
                field("n", FieldType::Int, false, Some("3")),
                field("on", FieldType::Bool, false, Some("true")),
            ],
        };
        let mut config = json!({"url": "https://mine"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        schema.apply_defaults(&mut config);
        assert_eq!(
            Value::Object(config.clone()),
            json!({"url": "https://mine", "perms": ["a", "b", "c"], "n": 3, "on": true})
        );
        assert_eq!(schema.missing_required(&config), vec!["key".to_owned()]);
        config.insert("key".into(), json!(""));
        assert_eq!(schema.missing_required(&config), vec!["key".to_owned()]);
    }
}

/// How long the host waits for each method's answer, by the specification's table.
pub fn default_timeout(method_name: &str) -> std::time::Duration {
    let seconds = match method_name {
        method::CONFIGURE | method::VALIDATE | method::REVOKE_CREDENTIAL => 30,
        method::GET_CREDENTIAL => 60,
        method::SHUTDOWN => 5,
        _ => 10,
    };
    std::time::Duration::from_secs(seconds)
}

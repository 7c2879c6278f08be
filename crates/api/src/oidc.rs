//! The OIDC provider's wire (§11): discovery, JWKS, the token endpoint (RFC 6749 bodies and
//! errors) and userinfo.

use creddy_core::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /.well-known/openid-configuration`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Discovery {
    /// The issuer (the server's public URL).
    pub issuer: String,
    /// `POST` client credentials here.
    pub token_endpoint: String,
    /// The public signing keys.
    pub jwks_uri: String,
    /// Who a token belongs to.
    pub userinfo_endpoint: String,
    /// `client_credentials`.
    pub grant_types_supported: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `token`.
    pub response_types_supported: Vec<String>,
    /// `public`.
    pub subject_types_supported: Vec<String>,
    /// The algorithms of the published keys.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Only `openid`: unauthenticated callers learn no backend names.
    pub scopes_supported: Vec<String>,
    /// The claims tokens carry.
    pub claims_supported: Vec<String>,
    /// Where a token is exchanged for a backend credential.
    pub credential_exchange_endpoint: String,
}

/// `GET /.well-known/jwks.json`: the public keys (RFC 7517).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    /// Each published key as a JWK.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Value>,
}

/// `POST /oauth/token`, as a form (`application/x-www-form-urlencoded`) or JSON; the client
/// may authenticate with HTTP Basic instead of the body's `client_id`/`client_secret`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `client_credentials`, or `urn:ietf:params:oauth:grant-type:token-exchange` (§18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    /// The client id (or the agent's name or id with its vend token as the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Secret<String>>,
    /// Space-separated scopes to narrow the token to (and `openid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The token's audience; the issuer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Token exchange: the workload's OIDC token (a JWT its platform signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub subject_token: Option<Secret<String>>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:jwt` or `…:id_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
}

/// An issued access token (RFC 6749 §5.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// A signed JWT (`typ: at+jwt`).
    #[schema(value_type = String)]
    pub access_token: Secret<String>,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// A signed OIDC ID token.
    #[schema(value_type = String)]
    pub id_token: Secret<String>,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// A token endpoint error (RFC 6749 §5.2).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type`,
    /// `invalid_scope` or `rate_limited`.
    pub error: String,
    /// For people.
    pub error_description: String,
}

/// `GET /oauth/userinfo`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// The agent's id.
    pub sub: String,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Its OIDC client id.
    pub client_id: String,
    /// What it may ask for.
    pub scopes: Vec<String>,
}

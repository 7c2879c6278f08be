//! The OIDC provider's routes (§11): discovery, JWKS, `POST /oauth/token`
//! (`client_credentials`, `client_secret_basic` or `client_secret_post`, form or JSON),
//! `GET /oauth/userinfo`, and the admin's `GET /v1/admin/keys` and
//! `POST /v1/admin/keys/rotate`. Token endpoint errors follow RFC 6749.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use creddy_core::agent::Agent;
use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_core::scope::Scope;
use creddy_core::secret::{SecretToken, TokenHash, TokenKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::EngineError;
use crate::http::RequestOrigin;
use crate::http::error::no_store;
use crate::state::AppState;

/// `GET /.well-known/openid-configuration`.
pub(crate) async fn discovery(State(state): State<AppState>) -> Response {
    let issuer = state.issuer();
    let mut algs: Vec<String> = state
        .keys()
        .jwks()
        .iter()
        .filter_map(|k| k["alg"].as_str().map(str::to_owned))
        .collect();
    algs.sort();
    algs.dedup();
    let body = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        // Only `openid`: unauthenticated callers learn no backend names (§15.8).
        "scopes_supported": ["openid"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id",
            "agent_id", "agent_name", "scope", "scopes", "auth_time"],
        "credential_exchange_endpoint": format!("{issuer}/v1/credentials/{{backend}}"),
    });
    ([(CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

/// `GET /.well-known/jwks.json`.
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(CACHE_CONTROL, "public, max-age=300")],
        Json(json!({"keys": state.keys().jwks()})),
    )
        .into_response()
}

/// An RFC 6749 error.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid_client(basic: bool) -> Response {
    let mut response = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "unknown client or wrong secret",
    );
    if basic {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            "Basic realm=\"creddy\""
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
    }
    response
}

/// The token request's fields, from a form or a JSON body.
#[derive(Debug, Default, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
}

fn parse_request(headers: &HeaderMap, body: &Bytes) -> Option<TokenRequest> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if json {
        return serde_json::from_slice(body).ok();
    }
    let mut request = TokenRequest::default();
    for pair in std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::http::form_decode(value)?;
        match key {
            "grant_type" => request.grant_type = Some(value),
            "client_id" => request.client_id = Some(value),
            "client_secret" => request.client_secret = Some(value),
            "scope" => request.scope = Some(value),
            "audience" => request.audience = Some(value),
            _ => {}
        }
    }
    Some(request)
}

/// Client credentials from HTTP Basic (preferred) or the body; the bool says Basic was used.
fn client_credentials(
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Option<(String, String, bool)> {
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((
                crate::http::form_decode(id)?,
                crate::http::form_decode(secret)?,
            ))
        });
    match basic {
        Some((id, secret)) => Some((id, secret, true)),
        None => Some((
            request.client_id.clone()?,
            request.client_secret.clone()?,
            false,
        )),
    }
}

/// The agent whose client credentials these are: its client id and client secret, or its
/// name or id and vend token. Hashes are compared in constant time.
async fn authenticate_client(
    state: &AppState,
    id: &str,
    secret: &str,
) -> Result<Option<Agent>, EngineError> {
    if let Some(given) = SecretToken::parse(TokenKind::ClientSecret, secret) {
        if let Some((agent, stored)) = state.store().find_agent_by_client_id(id).await? {
            let presented = state.sealer().client_secret_hash(&given);
            return Ok(stored.matches(&presented).then_some(agent));
        }
        return Ok(None);
    }
    if let Some(given) = SecretToken::parse(TokenKind::Vend, secret) {
        let presented: TokenHash = given.hash();
        if let Some((agent, stored)) = state.store().find_agent_by_token_hash(&presented).await? {
            let named = agent.id.as_str() == id || agent.name.eq_ignore_ascii_case(id);
            return Ok((named && stored.matches(&presented)).then_some(agent));
        }
    }
    Ok(None)
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    RequestOrigin(context): RequestOrigin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, EngineError> {
    let Some(request) = parse_request(&headers, &body) else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not a form or JSON object",
        ));
    };
    if request.grant_type.as_deref() != Some("client_credentials") {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            if request.grant_type.is_none() {
                "invalid_request"
            } else {
                "unsupported_grant_type"
            },
            "only grant_type=client_credentials is supported",
        ));
    }
    let Some((id, secret, basic)) = client_credentials(&headers, &request) else {
        return Ok(invalid_client(false));
    };
    let Some(agent) = authenticate_client(&state, &id, &secret).await? else {
        state
            .record_auth_failure(context.ip.clone(), "client")
            .await;
        return Ok(invalid_client(basic));
    };
    let now = state.clock().now();
    if agent.is_expired(now) {
        return Ok(invalid_client(basic));
    }
    if let Err(retry_after) = state.token_limiter().check(agent.id.as_str(), now) {
        let mut response = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many token requests from this client",
        );
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, retry_after.into());
        return Ok(response);
    }
    let grants = agent.scopes.to_strings();
    let mut granted: Vec<String> = Vec::new();
    let mut openid = false;
    match request
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => granted.clone_from(&grants),
        Some(asked) => {
            for item in asked.split_whitespace().take(64) {
                if item == "openid" {
                    openid = true;
                    continue;
                }
                let Ok(scope) = Scope::parse(item) else {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a requested scope is malformed",
                    ));
                };
                if !agent.scopes.covers(&scope) {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a requested scope is not granted to this client",
                    ));
                }
                granted.push(item.to_owned());
            }
        }
    }
    let issuer = state.issuer().to_owned();
    let audience = request.audience.clone().unwrap_or_else(|| issuer.clone());
    // A token never outlives its agent.
    let iat = now.as_millis() / 1000;
    let mut exp = iat + i64::try_from(state.settings().oidc.token_ttl).unwrap_or(3_600);
    if let Some(end) = agent.expires_at {
        exp = exp.min(end.as_millis() / 1000);
    }
    let ttl = u64::try_from(exp - iat).unwrap_or(0);
    let mut jti = [0u8; 16];
    creddy_core::secret::fill_random(&mut jti);
    let jti = hex::encode(jti);
    let mut scope_text = granted.join(" ");
    if openid {
        scope_text = format!("openid {scope_text}").trim().to_owned();
    }
    let claims = json!({
        "iss": issuer, "sub": agent.id.as_str(), "aud": audience, "exp": exp, "iat": iat, "nbf": iat,
        "jti": jti, "client_id": agent.client_id, "agent_id": agent.id.as_str(), "agent_name": agent.name,
        "scope": scope_text, "scopes": granted,
    });
    let id_claims = json!({
        "iss": issuer, "sub": agent.id.as_str(), "aud": audience, "exp": exp, "iat": iat,
        "auth_time": iat, "client_id": agent.client_id, "agent_id": agent.id.as_str(),
        "agent_name": agent.name,
    });
    let (Some(access), Some(id_token)) = (
        state.keys().sign(&claims, "at+jwt"),
        state.keys().sign(&id_claims, "JWT"),
    ) else {
        return Err(EngineError::new(
            crate::error::ErrorCode::Internal,
            "no signing key is available",
        )
        .with_remedy("retry later; the server log has the cause"));
    };
    let event = AuditEvent::new(
        Action::TokenIssued,
        Actor::agent(agent.id.as_str(), &agent.name),
        now,
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .from_request(context.ip, context.request_id)
    .with_details(
        json!({"jti": jti, "scope": scope_text, "audience": audience, "expires_in": ttl}),
    );
    state.store().record_event(&event).await?;
    state.metrics().count(crate::metrics::TOKENS_ISSUED, &[]);
    Ok((
        no_store(),
        Json(
            json!({"access_token": access, "token_type": "Bearer", "expires_in": ttl,
            "id_token": id_token, "scope": scope_text}),
        ),
    )
        .into_response())
}

/// `GET /oauth/userinfo`.
pub(crate) async fn userinfo(principal: Principal) -> Result<Json<Value>, EngineError> {
    let agent = principal.into_agent()?;
    Ok(Json(
        json!({"sub": agent.id.as_str(), "agent_id": agent.id.as_str(),
        "agent_name": agent.name, "client_id": agent.client_id, "scopes": agent.scopes.to_strings()}),
    ))
}

/// `GET /v1/admin/keys`.
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<creddy_store::SigningKeyRecord>>, EngineError> {
    principal.require_admin("admin:keys:read")?;
    Ok(Json(state.store().signing_keys().await?))
}

/// `POST /v1/admin/keys/rotate` body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RotateBody {
    alg: Option<String>,
    grace: Option<String>,
}

/// `POST /v1/admin/keys/rotate`.
pub(crate) async fn rotate_keys(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Json<Value>, EngineError> {
    principal.require_admin("admin:keys:write")?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| EngineError::invalid_request(format!("invalid JSON body: {e}")))?
    };
    let settings = state.settings().oidc.clone();
    let alg = body.alg.clone().unwrap_or_else(|| settings.alg.clone());
    if !crate::config::SIGNING_ALGS.contains(&alg.as_str()) {
        return Err(
            EngineError::invalid_request(format!("algorithm '{alg}' is not offered"))
                .with_remedy("use EdDSA, ES256 or RS256"),
        );
    }
    let grace = match body.grace.as_deref() {
        Some(text) => creddy_core::Duration::parse(text)
            .map_err(|e| EngineError::invalid_request(format!("grace: {e}")))?
            .as_seconds(),
        None => settings.rotation_grace,
    }
    .max(settings.token_ttl);
    let (key, previous, retires_at) =
        crate::oidc::rotate(&state, principal.actor(), grace, &alg).await?;
    Ok(Json(
        json!({"kid": key.kid, "alg": key.alg, "state": "current", "created_at": key.created_at,
        "retires_at": null, "previous": previous, "previous_retires_at": retires_at}),
    ))
}

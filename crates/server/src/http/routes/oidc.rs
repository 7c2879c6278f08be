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
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use creddy_api::keys as keys_api;
use creddy_api::oidc as api;

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::exchange;
use crate::engine::state::Engine;
use crate::engine::tokens::{self, Grant, Refusal};
use crate::http::RequestOrigin;
use crate::http::error::no_store;

/// `GET /.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "oidc",
    responses((status = 200, description = "The provider's metadata", body = api::Discovery)))]
pub(crate) async fn discovery(State(state): State<Engine>) -> Response {
    let issuer = state.issuer();
    let mut algs: Vec<String> = state
        .keys()
        .jwks()
        .iter()
        .filter_map(|k| k["alg"].as_str().map(str::to_owned))
        .collect();
    algs.sort();
    algs.dedup();
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    let body = api::Discovery {
        issuer: issuer.to_owned(),
        token_endpoint: format!("{issuer}/oauth/token"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        userinfo_endpoint: format!("{issuer}/oauth/userinfo"),
        // The token exchange only where a [[trust]] could admit a subject token (§18).
        grant_types_supported: if state.trusts().all().is_empty() {
            names(&["client_credentials"])
        } else {
            names(&["client_credentials", crate::engine::exchange::GRANT_TYPE])
        },
        token_endpoint_auth_methods_supported: names(&[
            "client_secret_basic",
            "client_secret_post",
        ]),
        response_types_supported: names(&["token"]),
        subject_types_supported: names(&["public"]),
        id_token_signing_alg_values_supported: algs,
        // Only `openid`: unauthenticated callers learn no backend names (§15.8).
        scopes_supported: names(&["openid"]),
        claims_supported: names(&[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "client_id",
            "agent_id",
            "agent_name",
            "scope",
            "scopes",
            "auth_time",
        ]),
        credential_exchange_endpoint: format!("{issuer}/v1/credentials/{{backend}}"),
    };
    ([(CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

/// `GET /.well-known/jwks.json`.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oidc",
    responses((status = 200, description = "The public signing keys", body = api::Jwks)))]
pub(crate) async fn jwks(State(state): State<Engine>) -> Response {
    (
        [(CACHE_CONTROL, "public, max-age=300")],
        Json(api::Jwks {
            keys: state.keys().jwks(),
        }),
    )
        .into_response()
}

/// An RFC 6749 error.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = api::OAuthError {
        error: error.to_owned(),
        error_description: description.to_owned(),
    };
    (status, [(CACHE_CONTROL, "no-store")], Json(body)).into_response()
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
fn parse_request(headers: &HeaderMap, body: &Bytes) -> Option<api::TokenRequest> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if json {
        return serde_json::from_slice(body).ok();
    }
    // A form is ASCII; a body that is not even UTF-8 is no form.
    let form = std::str::from_utf8(body).ok()?;
    let mut request = api::TokenRequest::default();
    for (key, value) in form_urlencoded::parse(form.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "grant_type" => request.grant_type = Some(value),
            "client_id" => request.client_id = Some(value),
            "client_secret" => request.client_secret = Some(value.into()),
            "scope" => request.scope = Some(value),
            "audience" => request.audience = Some(value),
            "subject_token" => request.subject_token = Some(value.into()),
            "subject_token_type" => request.subject_token_type = Some(value),
            _ => {}
        }
    }
    Some(request)
}

/// Client credentials from HTTP Basic (preferred) or the body; the bool says Basic was used.
fn client_credentials(
    headers: &HeaderMap,
    request: &api::TokenRequest,
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
                crate::http::form_component(id)?,
                crate::http::form_component(secret)?,
            ))
        });
    match basic {
        Some((id, secret)) => Some((id, secret, true)),
        None => Some((
            request.client_id.clone()?,
            request.client_secret.as_ref()?.expose().clone(),
            false,
        )),
    }
}

/// `POST /oauth/token`: client credentials for a signed access token (and an ID token).
#[utoipa::path(post, path = "/oauth/token", tag = "oidc", security((), ("client" = [])),
    request_body(content((api::TokenRequest = "application/x-www-form-urlencoded"), (api::TokenRequest = "application/json"))),
    responses((status = 200, description = "The tokens", body = api::TokenResponse),
        (status = 400, description = "`invalid_request`, `unsupported_grant_type` or `invalid_scope`", body = api::OAuthError),
        (status = 401, description = "`invalid_client`", body = api::OAuthError),
        (status = 429, description = "`rate_limited`", body = api::OAuthError)))]
pub(crate) async fn token(
    State(state): State<Engine>,
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
    if request.grant_type.as_deref() == Some(exchange::GRANT_TYPE) {
        return exchange_token(&state, &context, request).await;
    }
    if request.grant_type.as_deref() != Some("client_credentials") {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            if request.grant_type.is_none() {
                "invalid_request"
            } else {
                "unsupported_grant_type"
            },
            "grant_type must be client_credentials or urn:ietf:params:oauth:grant-type:token-exchange",
        ));
    }
    let Some((client_id, secret, basic)) = client_credentials(&headers, &request) else {
        return Ok(invalid_client(false));
    };
    let grant = Grant {
        client_id,
        secret,
        scope: request.scope,
        audience: request.audience,
    };
    match tokens::issue(&state, &context, grant).await? {
        Ok(issued) => Ok(token_answer(issued, None)),
        Err(refusal) => Ok(token_refusal(refusal, basic)),
    }
}

/// The tokens as RFC 6749 answers them (and RFC 8693 with the issued type).
fn token_answer(issued: tokens::Tokens, issued_token_type: Option<&str>) -> Response {
    let answer = api::TokenResponse {
        access_token: issued.access_token.into(),
        token_type: "Bearer".to_owned(),
        expires_in: issued.expires_in,
        id_token: issued.id_token.into(),
        scope: issued.scope,
        issued_token_type: issued_token_type.map(str::to_owned),
    };
    (no_store(), Json(answer)).into_response()
}

/// A token exchange (§18): the workload's OIDC token for an access token.
async fn exchange_token(
    state: &Engine,
    context: &creddy_core::origin::Origin,
    request: api::TokenRequest,
) -> Result<Response, EngineError> {
    let Some(subject_token) = request.subject_token else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a token exchange needs subject_token (the workload's OIDC token)",
        ));
    };
    let asked = exchange::Exchange {
        subject_token: subject_token.expose().clone(),
        subject_token_type: request.subject_token_type,
        scope: request.scope,
        audience: request.audience,
    };
    Ok(match exchange::exchange(state, context, asked).await? {
        Ok(issued) => token_answer(issued, Some(exchange::ISSUED_TYPE)),
        Err(exchange::ExchangeRefusal::InvalidRequest(why)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why)
        }
        Err(exchange::ExchangeRefusal::InvalidGrant(why)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &why)
        }
        Err(exchange::ExchangeRefusal::Token(refusal)) => token_refusal(refusal, false),
    })
}

/// A refused token request as RFC 6749 answers it.
fn token_refusal(refusal: Refusal, basic: bool) -> Response {
    match refusal {
        Refusal::InvalidClient => invalid_client(basic),
        Refusal::InvalidScope(description) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", description)
        }
        Refusal::RateLimited(retry_after) => {
            let mut response = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many token requests from this client",
            );
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after.into());
            response
        }
    }
}

/// `GET /oauth/userinfo`.
#[utoipa::path(get, path = "/oauth/userinfo", tag = "oidc", security(("bearer" = [])),
    responses((status = 200, description = "The agent the token belongs to", body = api::UserInfo)))]
pub(crate) async fn userinfo(principal: Principal) -> Result<Json<api::UserInfo>, EngineError> {
    let agent = principal.into_agent()?;
    Ok(Json(api::UserInfo {
        sub: agent.id.to_string(),
        agent_id: agent.id.to_string(),
        agent_name: agent.name,
        client_id: agent.client_id,
        scopes: agent.scopes.to_strings(),
    }))
}

/// `GET /v1/admin/keys`.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "oidc", security(("bearer" = [])),
    responses((status = 200, description = "Every signing key, newest first", body = Vec<keys_api::SigningKey>)))]
pub(crate) async fn list_keys(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<keys_api::SigningKey>>, EngineError> {
    let keys = crate::engine::oidc::keys(&state, &principal).await?;
    Ok(Json(keys.into_iter().map(key_view).collect()))
}

/// A signing key as admins see it (never its private half).
fn key_view(key: creddy_store::SigningKeyRecord) -> keys_api::SigningKey {
    keys_api::SigningKey {
        kid: key.kid,
        alg: key.alg,
        state: key.state,
        created_at: key.created_at,
        retires_at: key.retires_at,
    }
}

/// `POST /v1/admin/keys/rotate`.
#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "oidc", security(("bearer" = [])),
    request_body(content = Option<keys_api::RotateRequest>, description = "The algorithm and grace (optional)"),
    responses((status = 200, description = "The new current key", body = keys_api::Rotated)))]
pub(crate) async fn rotate_keys(
    State(state): State<Engine>,
    principal: Principal,
    body: Bytes,
) -> Result<Json<keys_api::Rotated>, EngineError> {
    let body: keys_api::RotateRequest = crate::http::optional_json(&body)?;
    let (key, previous, retires_at) =
        crate::engine::oidc::rotate_as_asked(&state, &principal, body.alg, body.grace.as_deref())
            .await?;
    Ok(Json(keys_api::Rotated {
        kid: key.kid,
        alg: key.alg,
        state: creddy_core::signing::KeyState::Current,
        created_at: key.created_at,
        retires_at: None,
        previous,
        previous_retires_at: Some(retires_at),
    }))
}

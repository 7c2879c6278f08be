//! Authentication at the HTTP edge: the bearer token of a request's `Authorization` header,
//! resolved to a [`Principal`] by the engine (`crate::engine::auth`); a refused bearer token is
//! counted per client address for the `auth.failed` audit events.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::engine::auth::{Principal, authenticate, token_rejected};
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

impl FromRequestParts<Engine> for Principal {
    type Rejection = EngineError;

    async fn from_request_parts(parts: &mut Parts, state: &Engine) -> Result<Self, EngineError> {
        let result = match bearer_token(parts) {
            Ok(token) => authenticate(state, token).await,
            Err(refused) => Err(refused),
        };
        if let Err(e) = &result
            && e.code == ErrorCode::Unauthorized
            && parts.headers.contains_key(AUTHORIZATION)
        {
            let ip = super::client_ip(parts, state);
            state.record_auth_failure(ip, "bearer").await;
        }
        result
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(parts: &Parts) -> Result<&str, EngineError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| {
            EngineError::unauthorized("no bearer token was sent")
                .with_remedy("send Authorization: Bearer <token>")
        })?
        .to_str()
        .map_err(|_| token_rejected())?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            EngineError::unauthorized("the Authorization header is not a bearer token")
                .with_remedy("send Authorization: Bearer <token>")
        })
}

//! Authentication at the HTTP edge: the `Authorization` header of a request, resolved to a
//! [`Principal`] by the engine (`crate::auth`); a refused bearer token is counted per client
//! address for the `auth.failed` audit events.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::auth::{Principal, authenticate};
use crate::error::{EngineError, ErrorCode};
use crate::state::AppState;

impl FromRequestParts<AppState> for Principal {
    type Rejection = EngineError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, EngineError> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .map(|value| value.to_str().ok());
        let result = authenticate(state, authorization).await;
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

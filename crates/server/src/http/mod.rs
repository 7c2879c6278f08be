//! The HTTP edge: the router, its layers and the extractors shared by handlers.
//!
//! Layers, outermost first: request ids (`X-Request-Id`, generated when absent and echoed on
//! every response), sensitive-header redaction, access logs (path only, never the query
//! string or the `Authorization` header), panic recovery, the per-request timeout, and the
//! rewrite of bodiless errors into the standard error shape. Bodies are limited to 64 KiB.

pub(crate) mod auth;
pub(crate) mod error;
pub mod listener;
pub mod openapi;
pub mod proxy;
mod routes;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::extract::{MatchedPath, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::Response;
use axum::{Json, Router};
use creddy_core::Clock;
use creddy_core::SystemClock;
use creddy_core::ids::RequestId;
use creddy_core::origin::Origin;
use serde::de::DeserializeOwned;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::metrics;
use crate::engine::state::Engine;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a request may take before it is abandoned.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The enrollment poll secret travels in this header; it is redacted like `Authorization`.
const ENROLLMENT_SECRET: HeaderName = HeaderName::from_static("x-creddy-enrollment-secret");

/// Generates `req_<ULID>` ids for requests that arrive without one.
#[derive(Debug, Clone, Copy)]
struct MakeReqId;

impl MakeRequestId for MakeReqId {
    fn make_request_id<B>(
        &mut self,
        _request: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = RequestId::generate(SystemClock.now());
        HeaderValue::from_str(id.as_str())
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// Whether a client's `X-Request-Id` may be kept: 1 to 64 of `[A-Za-z0-9_-]`. Anything else
/// (a 60 KB id would be copied into every audit record of the request) is replaced.
fn is_acceptable_request_id(value: &[u8]) -> bool {
    (1..=64).contains(&value.len())
        && value
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// Removes a client's request id unless it is one acceptable value, so that a fresh one is
/// generated instead.
async fn drop_malformed_request_id(mut request: Request) -> Request {
    let ids = request.headers().get_all(&REQUEST_ID);
    let mut values = ids.iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => true,
        (Some(one), None) => is_acceptable_request_id(one.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// The whole application.
pub(crate) fn router(state: Engine) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    let layers = ServiceBuilder::new()
        .layer(axum::middleware::map_request(drop_malformed_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeReqId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            ENROLLMENT_SECRET,
        ]))
        .layer(trace)
        .layer(map_response(error::ensure_error_body))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let (routes, _) = routes::router().split_for_parts();
    routes
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(from_fn_with_state(state.clone(), read_body_in_time))
        .layer(from_fn_with_state(state.clone(), count_request))
        .layer(layers)
        .with_state(state)
}

/// Counts each request by route template and status, and each change refused because its
/// audit record could not be written.
async fn count_request(State(state): State<Engine>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    state.metrics().count(
        metrics::HTTP_REQUESTS,
        &[("route", &route), ("status", status.as_str())],
    );
    if response.extensions().get::<ErrorCode>() == Some(&ErrorCode::AuditUnavailable) {
        state.metrics().count(metrics::AUDIT_FAILURES, &[]);
    }
    response
}

/// Reads the whole request body (at most [`BODY_LIMIT`]) before the handler runs, within
/// the body read timeout (15 s): a client trickling its body a byte at a time gets 408 and
/// its connection back, instead of holding a task and a descriptor for the 90 s request
/// timeout.
async fn read_body_in_time(State(state): State<Engine>, request: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, BODY_LIMIT);
    let within = state.settings().limits.body_read_timeout;
    match tokio::time::timeout(within, limited.collect()).await {
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            axum::response::IntoResponse::into_response(error::payload_too_large())
        }
        Ok(Err(_)) => axum::response::IntoResponse::into_response(EngineError::invalid_request(
            "the request body could not be read",
        )),
        Err(_) => {
            tracing::info!(
                seconds = within.as_secs(),
                "request body not received in time"
            );
            axum::response::IntoResponse::into_response(
                EngineError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} s",
                        within.as_secs()
                    ),
                )
                .with_remedy("send the whole body at once"),
            )
        }
    }
}

/// A JSON body whose rejections use the standard error shape and name the bad field.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = EngineError;

    async fn from_request(req: Request, state: &S) -> Result<Self, EngineError> {
        let Json(value) = Json::<T>::from_request(req, state)
            .await
            .map_err(|e: JsonRejection| EngineError::from(e))?;
        Ok(Self(value))
    }
}

/// Where a request came from (the client's address and the request id), as the engine's
/// plain [`Origin`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestOrigin(pub(crate) Origin);

/// The client's address: the peer, or behind a trusted proxy the forwarded one (see
/// `proxies`).
pub(crate) fn client_ip(parts: &Parts, state: &Engine) -> Option<String> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    Some(
        crate::proxies::client_address(peer, forwarded, &state.settings().trusted_proxies)
            .to_string(),
    )
}

impl FromRequestParts<Engine> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Engine,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts, state);
        let request_id = parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self(Origin { ip, request_id }))
    }
}

/// One `application/x-www-form-urlencoded` component (a client id or secret in HTTP Basic,
/// RFC 6749 §2.3.1): `+` is a space, `%XX` a byte; `None` when the bytes are not UTF-8.
pub(crate) fn form_component(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// An optional JSON body: empty (or only whitespace) means the defaults.
pub(crate) fn optional_json<T: DeserializeOwned + Default>(
    body: &axum::body::Bytes,
) -> Result<T, EngineError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| EngineError::invalid_request(format!("invalid JSON body: {e}")))
}

//! The HTTP face of engine errors: every non-2xx response has the body
//! `{"error": "<human message>", "code": "<stable code>", "remedy": "<optional hint>"}` and
//! the status of its code. Extractor rejections, unknown routes, wrong methods, oversized
//! bodies, timeouts and panics are all turned into the same shape here.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use creddy_api::ErrorBody;

use crate::engine::error::{EngineError, ErrorCode};

/// The HTTP status of an error code (`ErrorCode::status`, the API's table).
pub(crate) fn status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The code for a status that reached the edge without a body of ours.
fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        503 => ErrorCode::StorageUnavailable,
        _ => ErrorCode::Internal,
    }
}

impl EngineError {
    /// The wire form: `{"error", "code", "remedy"}`.
    fn into_body(self) -> ErrorBody {
        ErrorBody {
            error: self.message,
            code: self.code,
            remedy: self.remedy,
        }
    }
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let (retry_after, code) = (self.retry_after, self.code);
        let mut response = (status(self.code), Json(self.into_body())).into_response();
        response.extensions_mut().insert(code);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<JsonRejection> for EngineError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be JSON",
            )
            .with_remedy("send Content-Type: application/json"),
            _ => Self::invalid_request(format!("invalid JSON body: {}", rejection.body_text()))
                .with_remedy("check the field named in the message against the API reference"),
        }
    }
}

/// 413 `payload_too_large`.
pub(crate) fn payload_too_large() -> EngineError {
    EngineError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is larger than {} KiB",
            super::BODY_LIMIT / 1024
        ),
    )
}

/// Unknown routes: 404.
pub(crate) async fn unknown_route(uri: axum::http::Uri) -> EngineError {
    EngineError::not_found(format!("no such route: {}", uri.path()))
        .with_remedy("see the HTTP API reference for the routes creddy offers")
}

/// Known routes with the wrong method: 405.
pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> EngineError {
    EngineError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Gives every error response that left a layer without our JSON body (timeouts, limits,
/// panics) the standard shape, so callers can rely on one error format.
pub(crate) async fn ensure_error_body<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let response = response.map(axum::body::Body::new);
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success() || status.is_informational() || status.is_redirection() || is_json {
        return response;
    }
    let code = code_for_status(status);
    let message = match code {
        ErrorCode::RequestTimeout => "the request took too long and was abandoned".to_owned(),
        ErrorCode::PayloadTooLarge => payload_too_large().message,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let mut rebuilt = (status, Json(EngineError::new(code, message).into_body())).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = response.headers().get(&name) {
            rebuilt.headers_mut().insert(name, v.clone());
        }
    }
    rebuilt
}

/// `Cache-Control: no-store`, for responses that carry secrets.
pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

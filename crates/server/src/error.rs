//! The one API error type: every non-2xx response has the body
//! `{"error": "<human message>", "code": "<stable code>", "remedy": "<optional hint>"}`.
//!
//! Handlers return [`ApiError`]; extractor rejections, unknown routes, wrong methods,
//! oversized bodies, timeouts and panics are all turned into the same shape here. Internal
//! details (database errors and the like) are logged, never returned.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use creddy_store::StoreError;
use serde::Serialize;

/// The stable machine codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed body or parameter.
    InvalidRequest,
    /// 400: a scope fails the grammar or names an admin scope where not allowed.
    InvalidScope,
    /// 400: no configured backend or installed plugin of that name.
    UnknownBackend,
    /// 400: the TTL is unparsable or outside the allowed range.
    InvalidTtl,
    /// 401: missing, unknown, expired or malformed bearer token.
    Unauthorized,
    /// 401: the agent's lifetime has ended.
    AgentExpired,
    /// 403: admin scope missing, or the wrong kind of caller.
    Forbidden,
    /// 403: no grant covers the requested scope.
    ScopeDenied,
    /// 404: no backend of that name.
    BackendNotFound,
    /// 404: unknown id, name or route.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 408: the request took longer than the server allows.
    RequestTimeout,
    /// 409: the name is already used.
    NameTaken,
    /// 409: the item was already processed, or is in use.
    Conflict,
    /// 409: a policy's `max_agents` is reached.
    PolicyLimit,
    /// 410: enrollment credentials were already picked up.
    EnrollmentClaimed,
    /// 429: too many requests from this caller.
    RateLimited,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: an organisation the backend is not configured for.
    OrgNotConfigured,
    /// 429: too many open leases.
    QuotaExceeded,
    /// 500: unexpected server error.
    Internal,
    /// 501: a route kept for compatibility whose feature is not offered.
    NotImplemented,
    /// 502: the upstream refused the master credential.
    UpstreamAuthFailed,
    /// 502: the upstream did not find the organisation.
    UpstreamOrgNotFound,
    /// 502: the master credential lacks a permission.
    UpstreamPermissionDenied,
    /// 502: the upstream refused the request.
    UpstreamRejected,
    /// 503: the upstream is down.
    UpstreamUnavailable,
    /// 503: the upstream is rate limiting.
    UpstreamRateLimited,
    /// 503: the backend's plugin is not running.
    PluginUnavailable,
    /// 503: the audit trail cannot be written, so the change was refused.
    AuditUnavailable,
    /// 503: the database cannot be reached.
    StorageUnavailable,
}

impl ErrorCode {
    /// The HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidScope
            | ErrorCode::UnknownBackend
            | ErrorCode::InvalidTtl => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized | ErrorCode::AgentExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::ScopeDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::BackendNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::NameTaken | ErrorCode::Conflict | ErrorCode::PolicyLimit => {
                StatusCode::CONFLICT
            }
            ErrorCode::EnrollmentClaimed => StatusCode::GONE,
            ErrorCode::OrgNotConfigured => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::QuotaExceeded | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UpstreamAuthFailed
            | ErrorCode::UpstreamOrgNotFound
            | ErrorCode::UpstreamPermissionDenied
            | ErrorCode::UpstreamRejected => StatusCode::BAD_GATEWAY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::AuditUnavailable
            | ErrorCode::StorageUnavailable
            | ErrorCode::UpstreamUnavailable
            | ErrorCode::UpstreamRateLimited
            | ErrorCode::PluginUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code for a status that reached the edge without a body of ours.
    fn for_status(status: StatusCode) -> Self {
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
}

/// An error answered to a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    #[serde(rename = "error")]
    pub message: String,
    /// The stable code, for a program.
    pub code: ErrorCode,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// Seconds the client should wait before retrying, sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
            remedy: None,
            retry_after: None,
        }
    }

    /// Asks the client to wait `seconds` before retrying (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a remedy.
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(ErrorCode::RateLimited, message)
            .with_remedy(format!("retry in {retry_after} seconds"))
            .with_retry_after(retry_after)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (retry_after, code) = (self.retry_after, self.code);
        let mut response = (self.code.status(), Json(self)).into_response();
        response.extensions_mut().insert(code);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken => Self::new(ErrorCode::NameTaken, "the name is already taken"),
            StoreError::Conflict(message) => Self::new(ErrorCode::Conflict, message),
            StoreError::AuditUnavailable(_) => {
                tracing::error!(error = %e, "audit write failed; change refused");
                Self::new(
                    ErrorCode::AuditUnavailable,
                    "the audit trail cannot be written, so the change was not made",
                )
                .with_remedy("retry later; the server log has the cause")
            }
            _ => {
                tracing::error!(error = %e, "storage error");
                Self::new(ErrorCode::StorageUnavailable, "storage is unavailable")
                    .with_remedy("retry later; the server log has the cause")
            }
        }
    }
}

impl From<creddy_plugin::host::HostError> for ApiError {
    /// Maps plugin outcomes to API codes; the plugin's message and remedy pass through, but
    /// protocol details and raw upstream bodies stay in the server log.
    fn from(e: creddy_plugin::host::HostError) -> Self {
        use creddy_plugin::host::HostError;
        use creddy_plugin::protocol::ErrorKind;
        match e {
            HostError::Plugin {
                kind,
                message,
                remedy,
                retry_after,
                ..
            } => {
                let code = match kind {
                    ErrorKind::UpstreamAuth => ErrorCode::UpstreamAuthFailed,
                    ErrorKind::UpstreamNotFound => ErrorCode::UpstreamOrgNotFound,
                    ErrorKind::UpstreamPermission => ErrorCode::UpstreamPermissionDenied,
                    ErrorKind::UpstreamRejected => ErrorCode::UpstreamRejected,
                    ErrorKind::UpstreamRateLimited => ErrorCode::UpstreamRateLimited,
                    ErrorKind::UpstreamUnavailable => ErrorCode::UpstreamUnavailable,
                    ErrorKind::ScopeNotSupported => ErrorCode::InvalidScope,
                    ErrorKind::OrgNotConfigured => ErrorCode::OrgNotConfigured,
                    ErrorKind::InvalidConfig | ErrorKind::InvalidParams => {
                        ErrorCode::InvalidRequest
                    }
                    _ => {
                        tracing::error!(?kind, %message, "plugin reported an internal error");
                        return Self::new(
                            ErrorCode::PluginUnavailable,
                            "the backend's plugin failed",
                        )
                        .with_remedy("retry later; the server log has the cause");
                    }
                };
                let mut error = Self::new(code, message);
                error.remedy = remedy;
                error.retry_after = retry_after;
                error
            }
            other => {
                tracing::error!(error = %other, "plugin unavailable");
                Self::new(
                    ErrorCode::PluginUnavailable,
                    "the backend's plugin is not available",
                )
                .with_remedy("retry later; an admin can check the server log and creddy backend ls")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
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
pub(crate) fn payload_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is larger than {} KiB",
            crate::http::BODY_LIMIT / 1024
        ),
    )
}

/// Unknown routes: 404.
pub(crate) async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such route: {}", uri.path()))
        .with_remedy("see the HTTP API reference for the routes creddy offers")
}

/// Known routes with the wrong method: 405.
pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
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
    let code = ErrorCode::for_status(status);
    let message = match code {
        ErrorCode::RequestTimeout => "the request took too long and was abandoned".to_owned(),
        ErrorCode::PayloadTooLarge => payload_too_large().message,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let mut rebuilt = (status, Json(ApiError::new(code, message))).into_response();
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

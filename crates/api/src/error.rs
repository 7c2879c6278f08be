//! The body of every non-2xx answer (but the token endpoint's, which follows RFC 6749:
//! [`crate::oidc::OAuthError`]) and the stable codes a program branches on.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The stable machine codes of the API; each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The HTTP status that carries this code (part of the API's contract).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::InvalidScope | Self::UnknownBackend | Self::InvalidTtl => {
                400
            }
            Self::Unauthorized | Self::AgentExpired => 401,
            Self::Forbidden | Self::ScopeDenied => 403,
            Self::NotFound | Self::BackendNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::NameTaken | Self::Conflict | Self::PolicyLimit => 409,
            Self::EnrollmentClaimed => 410,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::OrgNotConfigured => 422,
            Self::QuotaExceeded | Self::RateLimited => 429,
            Self::Internal => 500,
            Self::NotImplemented => 501,
            Self::UpstreamAuthFailed
            | Self::UpstreamOrgNotFound
            | Self::UpstreamPermissionDenied
            | Self::UpstreamRejected => 502,
            Self::AuditUnavailable
            | Self::StorageUnavailable
            | Self::UpstreamUnavailable
            | Self::UpstreamRateLimited
            | Self::PluginUnavailable => 503,
        }
    }

    /// Whether the caller's request was refused (a 4xx), rather than the server or the
    /// upstream failing it.
    pub fn is_refusal(self) -> bool {
        (400..500).contains(&self.status())
    }
}

/// `{"error": "<for people>", "code": "<for programs>", "remedy": "<what to do>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// The stable code, for a program.
    pub code: ErrorCode,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

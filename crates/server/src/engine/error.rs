//! The engine's one error type: a stable code, a message for people, an optional remedy and
//! an optional wait before retrying. Front ends render it (the HTTP layer as
//! `{"error","code","remedy"}` with the code's status, in `http::error`). Store and plugin
//! failures are mapped here; internal details (database errors and the like) are logged,
//! never returned.

use creddy_store::StoreError;

pub use creddy_api::ErrorCode;

/// An error answered to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    /// What went wrong, for a person.
    pub message: String,
    /// The stable code, for a program.
    pub code: ErrorCode,
    /// What to do about it.
    pub remedy: Option<String>,
    /// Seconds the client should wait before retrying, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl EngineError {
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

/// The longest reason recorded in the audit trail (a rejection's, a forgotten lease's).
const MAX_REASON_CHARS: usize = 500;

/// Refuses a reason longer than [`MAX_REASON_CHARS`].
pub(crate) fn check_reason(reason: &str) -> Result<(), EngineError> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(EngineError::invalid_request(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        ))
        .with_remedy("shorten --reason"));
    }
    Ok(())
}

impl From<StoreError> for EngineError {
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

impl From<creddy_plugin::host::HostError> for EngineError {
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

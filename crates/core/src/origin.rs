//! Where a request came from, as plain data for audit records and rate limits: the client's
//! address (behind a trusted proxy, the forwarded one) and the request id. Front ends fill it
//! in (the HTTP layer from the connection and `X-Request-Id`); the engine only reads it.

/// The origin of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's IP address, when known.
    pub ip: Option<String>,
    /// The request id, when the front end has one.
    pub request_id: Option<String>,
}

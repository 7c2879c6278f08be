//! creddy's HTTP API as types: the request and response bodies of every route, one module
//! per area, each with its OpenAPI schema (`utoipa::ToSchema`).
//!
//! The server writes these types and the CLI reads them, so a renamed or retyped field fails
//! to compile on both sides instead of breaking at run time. Secrets on the wire (vend
//! tokens, client secrets, issued credentials, enrollment poll secrets) are
//! [`creddy_core::secret::Secret`]s: their `Debug` never shows them. The OpenAPI document
//! itself is assembled by the server from its routes (`docs/openapi.json`).

pub mod agents;
pub mod audit;
pub mod backends;
pub mod credentials;
pub mod enroll;
pub mod error;
pub mod health;
pub mod keys;
pub mod leases;
pub mod oidc;

pub use error::{ErrorBody, ErrorCode};

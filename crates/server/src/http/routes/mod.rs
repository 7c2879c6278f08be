//! The routes, one module per area; each handler extracts, authorises, calls the store or
//! the domain, and maps the result to the API's JSON.

mod agents;
mod audit;
mod backends;
mod credentials;
mod enroll;
mod health;
mod leases;
mod metrics;
mod oidc;
mod status;

use axum::Router;
use axum::routing::{any, delete, get, post};

use crate::state::AppState;

/// Every route of the API.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/v1/status", get(status::status))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/.well-known/jwks.json", get(oidc::jwks))
        .route("/oauth/token", post(oidc::token))
        .route("/oauth/userinfo", get(oidc::userinfo))
        .route("/v1/admin/keys", get(oidc::list_keys))
        .route("/v1/admin/keys/rotate", post(oidc::rotate_keys))
        .route("/v1/admin/audit", get(audit::list))
        .route("/v1/admin/audit/verify", get(audit::verify))
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/enroll/status", get(enroll::status))
        .route("/v1/admin/pending", get(enroll::pending))
        .route("/v1/admin/pending/{id}/approve", post(enroll::approve))
        .route("/v1/admin/pending/{id}/reject", post(enroll::reject))
        .route("/v1/request", post(enroll::amend))
        .route("/v1/request/{id}", get(enroll::amendment_status))
        .route("/v1/self", delete(enroll::leave))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/admin/agents", get(agents::list).post(agents::create))
        .route(
            "/v1/admin/agents/{name}",
            get(agents::show).delete(agents::remove),
        )
        .route(
            "/v1/admin/backends",
            get(backends::list).post(backends::add),
        )
        .route(
            "/v1/admin/backends/{name}",
            get(backends::inspect).delete(backends::remove),
        )
        .route(
            "/v1/admin/plugins/{name}",
            get(backends::plugin_description),
        )
        .route("/v1/admin/plugins", get(backends::list_plugins))
        .route("/v1/admin/plugins/reload", post(backends::reload_plugins))
        .route(
            "/v1/admin/plugins/{name}/reload",
            post(backends::reload_plugin),
        )
        .route("/v1/signing-key", any(health::not_offered))
        .route("/v1/proxy/{*rest}", any(health::not_offered))
        .route("/api/v1/{*rest}", any(health::not_offered))
        .route(
            "/v1/credentials/{backend}",
            get(credentials::vend_get).post(credentials::vend_post),
        )
        .route("/v1/active", get(credentials::active))
        .route("/v1/active/{id}", delete(leases::revoke_own))
        .route("/v1/admin/tokens", get(leases::list))
        .route(
            "/v1/admin/tokens/{id}",
            get(leases::show).delete(leases::revoke_any),
        )
}

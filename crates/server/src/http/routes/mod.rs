//! The routes, one module per area; each handler extracts, authorises, calls the engine, and
//! renders the answer as a `creddy-api` type. Every documented handler carries its
//! `#[utoipa::path]`, and [`router`] registers it through `utoipa_axum::routes!`, so the
//! router and the OpenAPI document are built from the same list and cannot drift apart.

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

use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::state::Engine;

/// Every route of the API, with its OpenAPI paths.
pub(crate) fn router() -> OpenApiRouter<Engine> {
    OpenApiRouter::with_openapi(super::openapi::base())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(super::openapi::serve))
        .routes(routes!(status::status))
        .routes(routes!(oidc::discovery))
        .routes(routes!(oidc::jwks))
        .routes(routes!(oidc::token))
        .routes(routes!(oidc::userinfo))
        .routes(routes!(oidc::list_keys))
        .routes(routes!(oidc::rotate_keys))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(enroll::enroll))
        .routes(routes!(enroll::status))
        .routes(routes!(enroll::pending))
        .routes(routes!(enroll::approve))
        .routes(routes!(enroll::reject))
        .routes(routes!(enroll::amend))
        .routes(routes!(enroll::amendment_status))
        .routes(routes!(enroll::leave))
        .routes(routes!(metrics::metrics))
        .routes(routes!(agents::list, agents::create))
        .routes(routes!(agents::show, agents::remove))
        .routes(routes!(backends::list, backends::add))
        .routes(routes!(backends::inspect, backends::remove))
        .routes(routes!(backends::plugin_description))
        .routes(routes!(backends::list_plugins))
        .routes(routes!(backends::reload_plugins))
        .routes(routes!(backends::reload_plugin))
        .routes(routes!(credentials::vend_get, credentials::vend_post))
        .routes(routes!(credentials::active))
        .routes(routes!(leases::revoke_own))
        .routes(routes!(leases::list))
        .routes(routes!(leases::show, leases::revoke_any))
        // Kept for callers of the original; answered 501 and left out of the document.
        .route("/v1/signing-key", any(health::not_offered))
        .route("/v1/proxy/{*rest}", any(health::not_offered))
        .route("/api/v1/{*rest}", any(health::not_offered))
}

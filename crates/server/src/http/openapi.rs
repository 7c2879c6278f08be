//! The OpenAPI 3.1 document of the API, built from the routes' `#[utoipa::path]`s and the
//! `creddy-api` types: served at `GET /v1/openapi.json` and committed as
//! `docs/openapi.json` (a test keeps the copy current).
//!
//! The errors every route can answer are added here rather than on each route: all may
//! answer 500 and 503 (storage or audit unavailable); authenticated ones 401, 403 and 429;
//! ones with parameters or a body 400; ones with a body 413 and 415; ones with a path
//! parameter 404. Each is `{"error","code","remedy"}` (`ErrorBody`).

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use creddy_api::ErrorBody;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};

/// The document's frame: title, description, licence, tags and security schemes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "creddy",
        description = "A self-hosted credential broker for AI agents: agents enroll, then ask for short-lived, scoped credentials that creddy mints upstream and revokes when their lease ends. Authenticate with `Authorization: Bearer <token>` (an agent's vend token; admin routes need an admin scope).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "credentials", description = "Vending credentials and the caller's leases"),
        (name = "enrollment", description = "Agents asking to be let in, and for more scopes"),
        (name = "agents", description = "Agents, as admins manage them"),
        (name = "backends", description = "Backends and their plugins"),
        (name = "leases", description = "Revoking and inspecting leases"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "oidc", description = "The OIDC provider"),
    )
)]
struct Frame;

/// The frame with the security schemes; the routes add their paths to it.
pub(crate) fn base() -> OpenApi {
    let mut api = Frame::openapi();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "client",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
    );
    api
}

/// The complete document.
pub fn document() -> OpenApi {
    let (_, mut api) = super::routes::router().split_for_parts();
    let components = api.components.get_or_insert_with(Default::default);
    // The error body and the code it refers to, for the responses added below.
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.schemas.insert(
        creddy_api::ErrorCode::name().into_owned(),
        creddy_api::ErrorCode::schema(),
    );
    components
        .responses
        .insert("Error".to_owned(), RefOr::T(error_response()));
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            add_common_errors(operation);
            name_by_tag(operation);
        }
    }
    api
}

/// `<tag>_<handler>` (`agents_list`, `backends_list`): handler names repeat across areas,
/// operation ids must not.
fn name_by_tag(operation: &mut Operation) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .cloned();
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        *id = format!("{tag}_{id}");
    }
}

/// The document as pretty JSON, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(crate) async fn serve() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], document_json())
}

fn error_response() -> Response {
    ResponseBuilder::new()
        .description("An error: what went wrong, its stable code and what to do about it")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                ))))
                .build(),
        )
        .build()
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Adds the errors any such operation can answer, leaving those it documents itself.
fn add_common_errors(operation: &mut Operation) {
    let authenticated = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_path_parameter = parameters
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path)));
    let has_body = operation.request_body.is_some();
    let mut statuses = vec!["500", "503"];
    if authenticated {
        statuses.extend(["401", "403", "429"]);
    }
    if has_body || !parameters.is_empty() {
        statuses.push("400");
    }
    if has_body {
        statuses.extend(["413", "415"]);
    }
    if has_path_parameter {
        statuses.push("404");
    }
    for status in statuses {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(utoipa::openapi::Ref::from_response_name("Error")));
    }
}

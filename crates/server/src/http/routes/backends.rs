//! `/v1/admin/backends` and `/v1/admin/plugins…`: configuring backends
//! (`engine::backend_config`, `engine::backend_admin`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_api::ErrorBody;
use creddy_api::backends as api;
use creddy_core::backend::BackendState;
use creddy_plugin::host::Description;
use creddy_store::BackendRecord;

use crate::engine::auth::Principal;
use crate::engine::backend_admin::Removal;
use crate::engine::backend_config::{self, Reload};
use crate::engine::error::EngineError;
use crate::engine::state::Engine;
use crate::http::{ApiJson, RequestOrigin};

/// A backend as the API shows it.
fn view(state: &Engine, record: &BackendRecord) -> api::Backend {
    api::Backend {
        id: record.id.to_string(),
        name: record.name.clone(),
        plugin: record.plugin.clone(),
        plugin_version: record.plugin_version.clone(),
        state: backend_config::live_state(state, record).to_owned(),
        active_leases: record.open_leases,
        created_at: record.created_at,
    }
}

fn reloaded((loaded, upgraded): Reload) -> Json<api::Reloaded> {
    Json(api::Reloaded {
        loaded,
        removed: Vec::new(),
        upgraded,
    })
}

/// `GET /v1/admin/plugins/{name}`: what `backend add` needs to prompt.
#[utoipa::path(get, path = "/v1/admin/plugins/{name}", tag = "backends", security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin's info, scopes, configuration schema and constraints", body = Object),
        (status = 502, description = "The plugin failed to describe itself", body = ErrorBody)))]
pub(crate) async fn plugin_description(
    State(state): State<Engine>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Description>, EngineError> {
    Ok(Json(
        backend_config::description(&state, &principal, &name).await?,
    ))
}

/// `POST /v1/admin/plugins/reload`: restarts every backend's plugin from the installed
/// binaries (after `plugin install` or `upgrade`).
#[utoipa::path(post, path = "/v1/admin/plugins/reload", tag = "backends", security(("bearer" = [])),
    responses((status = 200, description = "What was restarted", body = api::Reloaded)))]
pub(crate) async fn reload_plugins(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<api::Reloaded>, EngineError> {
    Ok(reloaded(
        backend_config::reload_all(&state, &principal).await?,
    ))
}

/// `POST /v1/admin/plugins/{name}/reload`: restarts the backends of plugin `name` only.
#[utoipa::path(post, path = "/v1/admin/plugins/{name}/reload", tag = "backends", security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "What was restarted", body = api::Reloaded)))]
pub(crate) async fn reload_plugin(
    State(state): State<Engine>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<api::Reloaded>, EngineError> {
    Ok(reloaded(
        backend_config::reload_plugin(&state, &principal, &name).await?,
    ))
}

/// `GET /v1/admin/plugins`: the installed plugins, whether each passes its integrity check,
/// and the backends that use it.
#[utoipa::path(get, path = "/v1/admin/plugins", tag = "backends", security(("bearer" = [])),
    responses((status = 200, description = "The installed plugins", body = api::PluginList)))]
pub(crate) async fn list_plugins(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<api::PluginList>, EngineError> {
    let (dir, plugins) = backend_config::plugins(&state, &principal).await?;
    Ok(Json(api::PluginList {
        dir: dir.display().to_string(),
        plugins: plugins
            .into_iter()
            .map(|p| api::Plugin {
                name: p.record.name,
                version: p.record.version,
                sha256: p.record.sha256,
                signed: p.record.signed,
                signer: p.record.signer,
                protocol_version: p.protocol_version,
                state: p.state.to_owned(),
                backends: p.backends,
            })
            .collect(),
    }))
}

/// Adds a backend: checks the configuration against the plugin's schema, starts the plugin
/// with it, asks the upstream to accept it, and only then stores it sealed.
#[utoipa::path(post, path = "/v1/admin/backends", tag = "backends", security(("bearer" = [])),
    request_body = api::AddBackend,
    responses((status = 200, description = "Added", body = api::AddedBackend),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 502, description = "The upstream refused the credentials", body = ErrorBody)))]
pub(crate) async fn add(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<api::AddBackend>,
) -> Result<Json<api::AddedBackend>, EngineError> {
    let (record, warnings) = backend_config::add(&state, &principal, &origin, body).await?;
    Ok(Json(api::AddedBackend {
        backend: view(&state, &record),
        warnings,
    }))
}

/// Lists backends.
#[utoipa::path(get, path = "/v1/admin/backends", tag = "backends", security(("bearer" = [])),
    responses((status = 200, description = "Every backend", body = Vec<api::Backend>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<api::Backend>>, EngineError> {
    let records = backend_config::list(&state, &principal).await?;
    Ok(Json(records.iter().map(|r| view(&state, r)).collect()))
}

/// Shows a backend with its configuration, secret fields masked.
#[utoipa::path(get, path = "/v1/admin/backends/{name}", tag = "backends", security(("bearer" = [])),
    params(("name" = String, Path, description = "The backend's name")),
    responses((status = 200, description = "The backend with its configuration, secrets masked", body = api::BackendDetail)))]
pub(crate) async fn inspect(
    State(state): State<Engine>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<api::BackendDetail>, EngineError> {
    let (record, config) = backend_config::inspect(&state, &principal, &name).await?;
    Ok(Json(api::BackendDetail {
        backend: view(&state, &record),
        config,
    }))
}

/// `DELETE /v1/admin/backends/{name}`: 204 when removed, 202 `draining` while its open
/// credentials are revoked (`?force=true` removes at once; see `backend_admin::remove`).
#[utoipa::path(delete, path = "/v1/admin/backends/{name}", tag = "backends", security(("bearer" = [])),
    params(("name" = String, Path, description = "The backend's name"), api::RemoveQuery),
    responses((status = 204, description = "Removed"),
        (status = 202, description = "Draining: removed once its open leases are revoked", body = api::Draining)))]
pub(crate) async fn remove(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(name): Path<String>,
    Query(query): Query<api::RemoveQuery>,
) -> Result<Response, EngineError> {
    match crate::engine::backend_admin::remove(&state, &principal, &origin, &name, query.force)
        .await?
    {
        Removal::Removed => Ok(StatusCode::NO_CONTENT.into_response()),
        Removal::Draining { open } => Ok((
            StatusCode::ACCEPTED,
            Json(api::Draining {
                name,
                state: BackendState::Draining.to_string(),
                leases: open,
            }),
        )
            .into_response()),
    }
}

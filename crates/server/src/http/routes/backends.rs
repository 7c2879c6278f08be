//! `/v1/admin/backends` and `/v1/admin/plugins/{name}`: configuring backends.
//!
//! Adding a backend describes the plugin, checks the configuration against its schema,
//! starts a plugin process with it (`configure`), asks the upstream (`validate`), and only
//! then seals the configuration and stores it. A backend whose credentials the upstream
//! rejects is never saved. Configuration values never appear in responses (secrets are
//! masked), logs or audit records.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_api::ErrorBody;
use creddy_api::backends as api;
use creddy_core::audit::{Action, AuditEvent};
use creddy_core::ids::BackendId;
use creddy_core::names::check_backend_name;
use creddy_plugin::host::{self, Description, PluginProcess};
use creddy_plugin::installed::{InstalledError, InstalledPlugin};
use creddy_plugin::protocol::{ConfigSchema, FieldType};
use creddy_store::{BackendRecord, StoreError};
use serde_json::{Map, Value, json};

use creddy_core::backend::BackendState;

use crate::engine::auth::Principal;
use crate::engine::backend_admin::{Removal, find};
use crate::engine::backends::{LiveBackend, config_context};
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;
use crate::http::{ApiJson, RequestOrigin};

/// A backend as the API shows it.
fn view(state: &Engine, record: &BackendRecord) -> api::Backend {
    let live_state = match state.backends().get(&record.name) {
        _ if record.state == BackendState::Draining => "draining",
        Some(live) => live.state(),
        None => "error",
    };
    api::Backend {
        id: record.id.clone(),
        name: record.name.clone(),
        plugin: record.plugin.clone(),
        plugin_version: record.plugin_version.clone(),
        state: live_state.to_owned(),
        active_leases: record.open_leases,
        created_at: record.created_at,
    }
}

/// The installed plugin `name`, or an error that says how to install it.
fn installed(state: &Engine, name: &str) -> Result<InstalledPlugin, EngineError> {
    let settings = state.plugin_settings();
    InstalledPlugin::load(&settings.dir, name, settings.allow_unsigned).map_err(|e| match e {
        InstalledError::NotInstalled(_) => EngineError::new(
            ErrorCode::UnknownBackend,
            format!("plugin '{name}' is not installed"),
        )
        .with_remedy(format!("install it with: creddy plugin install {name}")),
        other => EngineError::invalid_request(other.to_string()),
    })
}

async fn describe(state: &Engine, name: &str) -> Result<Description, EngineError> {
    let plugin = installed(state, name)?;
    let trusted = state.plugin_settings().trusted_keys;
    Ok(host::describe(&plugin, &trusted, crate::VERSION).await?)
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
    principal.require_admin("admin:plugins:read")?;
    Ok(Json(describe(&state, &name).await?))
}

/// `POST /v1/admin/plugins/reload`: restarts every backend's plugin from the installed
/// binaries (after `plugin install` or `upgrade`).
#[utoipa::path(post, path = "/v1/admin/plugins/reload", tag = "backends", security(("bearer" = [])),
    responses((status = 200, description = "What was restarted", body = api::Reloaded)))]
pub(crate) async fn reload_plugins(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<api::Reloaded>, EngineError> {
    principal.require_admin("admin:plugins:write")?;
    let records = state.store().list_backends().await?;
    restart_backends(&state, &records).await
}

/// Restarts the plugins of `records` from the installed binaries, records what changed among
/// the plugins, and tells the other nodes to reload theirs.
async fn restart_backends(
    state: &Engine,
    records: &[BackendRecord],
) -> Result<Json<api::Reloaded>, EngineError> {
    let (loaded, upgraded) = state
        .backends()
        .reload(records, state.sealer(), &state.plugin_settings())
        .await;
    tracing::info!(?loaded, ?upgraded, "plugins reloaded");
    crate::engine::plugin_events::record_changes(state, true).await?;
    crate::engine::sync::announce_reload(state).await?;
    Ok(Json(api::Reloaded {
        loaded,
        removed: Vec::new(),
        upgraded,
    }))
}

/// `POST /v1/admin/plugins/{name}/reload`: restarts the backends of plugin `name` only (after
/// an upgrade, or a removal: then they go to `error`).
#[utoipa::path(post, path = "/v1/admin/plugins/{name}/reload", tag = "backends", security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "What was restarted", body = api::Reloaded)))]
pub(crate) async fn reload_plugin(
    State(state): State<Engine>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<api::Reloaded>, EngineError> {
    principal.require_admin("admin:plugins:write")?;
    let records: Vec<_> = state
        .store()
        .list_backends()
        .await?
        .into_iter()
        .filter(|r| r.plugin == name)
        .collect();
    // A removed plugin's backends are restarted too: they go to `error` at once.
    if records.is_empty() {
        installed(&state, &name)?;
    }
    restart_backends(&state, &records).await
}

/// `GET /v1/admin/plugins`: the installed plugins, whether each passes its integrity check
/// (`ok`, `unsigned` when unsigned plugins may not run, `integrity_failed`), and the
/// backends that use it.
#[utoipa::path(get, path = "/v1/admin/plugins", tag = "backends", security(("bearer" = [])),
    responses((status = 200, description = "The installed plugins", body = api::PluginList)))]
pub(crate) async fn list_plugins(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<api::PluginList>, EngineError> {
    principal.require_admin("admin:plugins:read")?;
    let settings = state.plugin_settings();
    let live = state.backends().all();
    let checked = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || {
            InstalledPlugin::list(&settings.dir, true)
                .into_iter()
                .filter_map(Result::ok)
                .map(|p| {
                    let check =
                        creddy_plugin::host::verify_installation(&p, &settings.trusted_keys);
                    (p, check)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| EngineError::new(ErrorCode::Internal, e.to_string()))?
    };
    let plugins: Vec<api::Plugin> = checked
        .into_iter()
        .map(|(plugin, check)| {
            let r = &plugin.record;
            let users: Vec<&LiveBackend> = live
                .iter()
                .filter(|b| b.plugin == r.name)
                .map(AsRef::as_ref)
                .collect();
            let protocol = users
                .iter()
                .find_map(|b| b.process.as_ref().ok())
                .map_or(1, |p| p.started().hello.protocol_version);
            let plugin_state = match check {
                Err(_) => "integrity_failed",
                Ok(()) if !r.signed && !settings.allow_unsigned => "unsigned",
                Ok(()) => "ok",
            };
            api::Plugin {
                name: r.name.clone(),
                version: r.version.clone(),
                sha256: r.sha256.clone(),
                signed: r.signed,
                signer: r.signer.clone(),
                protocol_version: protocol,
                state: plugin_state.to_owned(),
                backends: users.iter().map(|b| b.name.clone()).collect(),
            }
        })
        .collect();
    Ok(Json(api::PluginList {
        dir: settings.dir.display().to_string(),
        plugins,
    }))
}

/// Checks `config` against the schema: no unknown fields, required ones present, each of
/// its type; applies the defaults.
fn check_config(
    schema: &ConfigSchema,
    plugin: &str,
    mut config: Map<String, Value>,
) -> Result<Value, EngineError> {
    let known: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    if let Some(unknown) = config.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(EngineError::invalid_request(format!(
            "unknown configuration field '{unknown}' for plugin '{plugin}' (its fields: {})",
            known.join(", ")
        )));
    }
    for field in &schema.fields {
        let Some(value) = config.get(&field.name) else {
            continue;
        };
        let fits = match field.field_type {
            FieldType::String | FieldType::Secret | FieldType::File => value.is_string(),
            FieldType::Int => value.is_i64() || value.is_u64(),
            FieldType::Bool => value.is_boolean(),
            FieldType::Array => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
        };
        if !fits {
            return Err(EngineError::invalid_request(format!(
                "configuration field '{}' must be of type {}",
                field.name,
                serde_json::to_value(field.field_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
    }
    schema.apply_defaults(&mut config);
    let missing = schema.missing_required(&config);
    if !missing.is_empty() {
        return Err(EngineError::invalid_request(format!(
            "missing required field: {}",
            missing.join(", ")
        ))
        .with_remedy("give them with --set KEY=VALUE, --set-file KEY=PATH or --config FILE.json"));
    }
    Ok(Value::Object(config))
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
    RequestOrigin(context): RequestOrigin,
    ApiJson(body): ApiJson<api::AddBackend>,
) -> Result<Json<api::AddedBackend>, EngineError> {
    principal.require_admin("admin:backends:write")?;
    let name = body.name.clone().unwrap_or_else(|| body.plugin.clone());
    check_backend_name(&name).map_err(|e| EngineError::invalid_request(e.to_string()))?;
    if state.store().find_backend(&name).await?.is_some() {
        return Err(backend_exists(&name));
    }
    let description = describe(&state, &body.plugin).await?;
    let config = check_config(&description.config_schema, &body.plugin, body.config)?;
    let (spec, version) = state
        .plugin_settings()
        .spec(&name, &body.plugin, config.clone())
        .map_err(EngineError::invalid_request)?;
    let process = PluginProcess::start(spec).await?;
    let warnings = if body.validate.unwrap_or(true) {
        match process.validate().await {
            Ok(w) => w,
            Err(e) => {
                process.stop().await;
                return Err(e.into());
            }
        }
    } else {
        vec!["validation skipped".to_owned()]
    };
    let now = state.clock().now();
    let plain = serde_json::to_vec(&config).unwrap_or_default();
    let record = BackendRecord {
        id: BackendId::generate(now).to_string(),
        name: name.clone(),
        plugin: body.plugin.clone(),
        plugin_version: version.clone(),
        sealed_config: state.sealer().seal(&config_context(&name), &plain),
        state: BackendState::Active,
        created_at: now,
        open_leases: 0,
    };
    let event = AuditEvent::new(Action::BackendAdded, principal.actor(), now)
        .about_lease(&name, None)
        .from_request(context.ip, context.request_id)
        .with_details(json!({"type": body.plugin, "plugin_version": version, "validated": body.validate.unwrap_or(true)}));
    if let Err(e) = state.store().create_backend(&record, &event).await {
        process.stop().await;
        return Err(match e {
            StoreError::NameTaken => backend_exists(&name),
            other => other.into(),
        });
    }
    state
        .backends()
        .swap_in(LiveBackend {
            name: name.clone(),
            plugin: body.plugin,
            version,
            process: Ok(process),
            sealed_config: record.sealed_config.clone(),
        })
        .await;
    tracing::info!(backend = %name, "backend added");
    Ok(Json(api::AddedBackend {
        backend: view(&state, &record),
        warnings,
    }))
}

fn backend_exists(name: &str) -> EngineError {
    EngineError::new(
        ErrorCode::NameTaken,
        format!("a backend named '{name}' already exists"),
    )
    .with_remedy(format!(
        "pick another name with --name, or remove it first: creddy backend rm {name}"
    ))
}

/// Lists backends.
#[utoipa::path(get, path = "/v1/admin/backends", tag = "backends", security(("bearer" = [])),
    responses((status = 200, description = "Every backend", body = Vec<api::Backend>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<api::Backend>>, EngineError> {
    principal.require_admin("admin:backends:read")?;
    let records = state.store().list_backends().await?;
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
    principal.require_admin("admin:backends:read")?;
    let record = find(&state, &name).await?;
    let plain = state.sealer().open(&config_context(&name), &record.sealed_config).map_err(|e| {
        tracing::error!(backend = %name, error = %e, "stored backend configuration cannot be opened");
        EngineError::new(ErrorCode::Internal, "the stored configuration cannot be decrypted")
    })?;
    let config: Map<String, Value> = serde_json::from_slice(&plain).unwrap_or_default();
    let schema = match describe(&state, &record.plugin).await {
        Ok(d) => Some(d.config_schema),
        Err(_) => None,
    };
    let masked: Map<String, Value> = config
        .into_iter()
        .map(|(key, value)| {
            let is_secret = schema.as_ref().is_none_or(|s| {
                s.fields
                    .iter()
                    .any(|f| f.name == key && f.field_type == FieldType::Secret)
            });
            (key, if is_secret { json!("********") } else { value })
        })
        .collect();
    Ok(Json(api::BackendDetail {
        backend: view(&state, &record),
        config: masked,
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

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
use creddy_core::Timestamp;
use creddy_core::audit::{Action, AuditEvent};
use creddy_core::ids::BackendId;
use creddy_core::names::check_backend_name;
use creddy_plugin::host::{self, Description, PluginProcess};
use creddy_plugin::installed::{InstalledError, InstalledPlugin};
use creddy_plugin::protocol::{ConfigSchema, FieldType};
use creddy_store::{BackendRecord, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use creddy_core::backend::BackendState;

use crate::auth::Principal;
use crate::backend_admin::{Removal, find};
use crate::backends::{LiveBackend, config_context};
use crate::error::{EngineError, ErrorCode};
use crate::http::{ApiJson, RequestOrigin};
use crate::state::AppState;

/// A backend as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct BackendView {
    id: String,
    name: String,
    #[serde(rename = "type")]
    plugin: String,
    plugin_version: String,
    state: String,
    active_leases: i64,
    created_at: Timestamp,
}

fn view(state: &AppState, record: &BackendRecord) -> BackendView {
    let live_state = match state.backends().get(&record.name) {
        _ if record.state == BackendState::Draining => "draining",
        Some(live) => live.state(),
        None => "error",
    };
    BackendView {
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
fn installed(state: &AppState, name: &str) -> Result<InstalledPlugin, EngineError> {
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

async fn describe(state: &AppState, name: &str) -> Result<Description, EngineError> {
    let plugin = installed(state, name)?;
    let trusted = state.plugin_settings().trusted_keys;
    Ok(host::describe(&plugin, &trusted, crate::VERSION).await?)
}

/// `GET /v1/admin/plugins/{name}`: what `backend add` needs to prompt.
pub(crate) async fn plugin_description(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Description>, EngineError> {
    principal.require_admin("admin:plugins:read")?;
    Ok(Json(describe(&state, &name).await?))
}

/// `POST /v1/admin/plugins/reload`: restarts every backend's plugin from the installed
/// binaries (after `plugin install` or `upgrade`).
pub(crate) async fn reload_plugins(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, EngineError> {
    principal.require_admin("admin:plugins:write")?;
    let records = state.store().list_backends().await?;
    restart_backends(&state, &records).await
}

/// Restarts the plugins of `records` from the installed binaries, records what changed among
/// the plugins, and tells the other nodes to reload theirs.
async fn restart_backends(
    state: &AppState,
    records: &[BackendRecord],
) -> Result<Json<Value>, EngineError> {
    let (loaded, upgraded) = state
        .backends()
        .reload(records, state.sealer(), &state.plugin_settings())
        .await;
    tracing::info!(?loaded, ?upgraded, "plugins reloaded");
    crate::plugin_events::record_changes(state, true).await?;
    crate::sync::announce_reload(state).await?;
    Ok(Json(
        json!({"loaded": loaded, "removed": [], "upgraded": upgraded}),
    ))
}

/// `POST /v1/admin/plugins/{name}/reload`: restarts the backends of plugin `name` only (after
/// an upgrade, or a removal: then they go to `error`).
pub(crate) async fn reload_plugin(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, EngineError> {
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
pub(crate) async fn list_plugins(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, EngineError> {
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
    let plugins: Vec<Value> = checked
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
            json!({"name": r.name, "version": r.version, "sha256": r.sha256, "signed": r.signed,
                "signer": r.signer, "protocol_version": protocol, "state": plugin_state,
                "backends": users.iter().map(|b| b.name.as_str()).collect::<Vec<_>>()})
        })
        .collect();
    Ok(Json(json!({"dir": settings.dir, "plugins": plugins})))
}

/// `POST /v1/admin/backends` body.
#[derive(Debug, Deserialize)]
pub(crate) struct AddBackend {
    #[serde(rename = "type")]
    plugin: String,
    name: Option<String>,
    #[serde(default)]
    config: Map<String, Value>,
    validate: Option<bool>,
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

/// Adds a backend.
pub(crate) async fn add(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    ApiJson(body): ApiJson<AddBackend>,
) -> Result<Response, EngineError> {
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
    let mut out = serde_json::to_value(view(&state, &record)).unwrap_or_default();
    out["warnings"] = json!(warnings);
    Ok(Json(out).into_response())
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
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<BackendView>>, EngineError> {
    principal.require_admin("admin:backends:read")?;
    let records = state.store().list_backends().await?;
    Ok(Json(records.iter().map(|r| view(&state, r)).collect()))
}

/// Shows a backend with its configuration, secret fields masked.
pub(crate) async fn inspect(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, EngineError> {
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
    let mut out = serde_json::to_value(view(&state, &record)).unwrap_or_default();
    out["config"] = Value::Object(masked);
    Ok(Json(out))
}

/// `DELETE` query.
#[derive(Debug, Deserialize)]
pub(crate) struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/admin/backends/{name}`: 204 when removed, 202 `draining` while its open
/// credentials are revoked (`?force=true` removes at once; see `backend_admin::remove`).
pub(crate) async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Response, EngineError> {
    match crate::backend_admin::remove(&state, &principal, &origin, &name, query.force).await? {
        Removal::Removed => Ok(StatusCode::NO_CONTENT.into_response()),
        Removal::Draining { open } => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"name": name, "state": "draining", "leases": open})),
        )
            .into_response()),
    }
}

//! Configuring backends and the plugins behind them: describing a plugin, checking a
//! configuration against its schema, adding a backend (the plugin started with it and the
//! upstream asked to accept it before anything is stored, sealed), inspecting one (secrets
//! masked), listing the installed plugins with their integrity, and restarting plugins.
//! Configuration values never appear in answers (secrets masked), logs or audit records.

use std::path::PathBuf;

use creddy_api::backends::AddBackend;
use creddy_core::audit::{Action, AuditEvent};
use creddy_core::backend::BackendState;
use creddy_core::ids::BackendId;
use creddy_core::names::check_backend_name;
use creddy_core::origin::Origin;
use creddy_plugin::host::{self, Description, PluginProcess};
use creddy_plugin::installed::{InstallRecord, InstalledError, InstalledPlugin};
use creddy_plugin::protocol::{ConfigSchema, FieldType};
use creddy_store::{BackendRecord, StoreError};
use serde_json::{Map, Value, json};

use crate::engine::auth::Principal;
use crate::engine::backend_admin::find;
use crate::engine::backends::{LiveBackend, config_context};
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// A backend's state as admins see it: `draining`, the plugin process's state, or `error`
/// when no process serves it.
pub(crate) fn live_state(state: &Engine, record: &BackendRecord) -> &'static str {
    match state.backends().get(&record.name) {
        _ if record.state == BackendState::Draining => "draining",
        Some(live) => live.state(),
        None => "error",
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

/// What `backend add` needs to prompt: the plugin's info, scopes, schema and constraints.
pub(crate) async fn description(
    state: &Engine,
    principal: &Principal,
    name: &str,
) -> Result<Description, EngineError> {
    principal.require_admin("admin:plugins:read")?;
    describe(state, name).await
}

/// Which backends a reload started and which changed plugin version.
pub(crate) type Reload = (Vec<String>, Vec<String>);

/// Restarts every backend's plugin from the installed binaries (after `plugin install` or
/// `upgrade`).
pub(crate) async fn reload_all(
    state: &Engine,
    principal: &Principal,
) -> Result<Reload, EngineError> {
    principal.require_admin("admin:plugins:write")?;
    let records = state.store().list_backends().await?;
    restart_backends(state, &records).await
}

/// Restarts the backends of plugin `name` only (after an upgrade, or a removal: then they
/// go to `error`).
pub(crate) async fn reload_plugin(
    state: &Engine,
    principal: &Principal,
    name: &str,
) -> Result<Reload, EngineError> {
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
        installed(state, name)?;
    }
    restart_backends(state, &records).await
}

/// Restarts the plugins of `records` from the installed binaries, records what changed among
/// the plugins, and tells the other nodes to reload theirs.
async fn restart_backends(
    state: &Engine,
    records: &[BackendRecord],
) -> Result<Reload, EngineError> {
    let (loaded, upgraded) = state
        .backends()
        .reload(records, state.sealer(), &state.plugin_settings())
        .await;
    tracing::info!(?loaded, ?upgraded, "plugins reloaded");
    crate::engine::plugin_events::record_changes(state, true).await?;
    crate::engine::sync::announce_reload(state).await?;
    Ok((loaded, upgraded))
}

/// An installed plugin and how it stands.
#[derive(Debug)]
pub(crate) struct PluginStatus {
    /// What was recorded at installation.
    pub(crate) record: InstallRecord,
    /// The protocol version its running process speaks (1 when none runs).
    pub(crate) protocol_version: u32,
    /// `ok`, `unsigned` (unsigned plugins may not run here) or `integrity_failed`.
    pub(crate) state: &'static str,
    /// The backends it serves.
    pub(crate) backends: Vec<String>,
}

/// The plugin directory and every installed plugin, checked for integrity.
pub(crate) async fn plugins(
    state: &Engine,
    principal: &Principal,
) -> Result<(PathBuf, Vec<PluginStatus>), EngineError> {
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
    let plugins: Vec<PluginStatus> = checked
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
            PluginStatus {
                protocol_version: protocol,
                state: plugin_state,
                backends: users.iter().map(|b| b.name.clone()).collect(),
                record: plugin.record.clone(),
            }
        })
        .collect();
    Ok((settings.dir.clone(), plugins))
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

/// Adds a backend: describes the plugin, checks the configuration against its schema, starts
/// a plugin process with it, asks the upstream (unless told not to), and only then seals and
/// stores it. Answers the stored record and the validation's warnings.
pub(crate) async fn add(
    state: &Engine,
    principal: &Principal,
    context: &Origin,
    body: AddBackend,
) -> Result<(BackendRecord, Vec<String>), EngineError> {
    principal.require_admin("admin:backends:write")?;
    let name = body.name.clone().unwrap_or_else(|| body.plugin.clone());
    check_backend_name(&name).map_err(|e| EngineError::invalid_request(e.to_string()))?;
    if state.store().find_backend(&name).await?.is_some() {
        return Err(backend_exists(&name));
    }
    let description = describe(state, &body.plugin).await?;
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
        id: BackendId::generate(now),
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
        .from_request(context.ip.clone(), context.request_id.clone())
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
    Ok((record, warnings))
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

/// Every backend.
pub(crate) async fn list(
    state: &Engine,
    principal: &Principal,
) -> Result<Vec<BackendRecord>, EngineError> {
    principal.require_admin("admin:backends:read")?;
    Ok(state.store().list_backends().await?)
}

/// A backend with its configuration, secret fields masked (every field when the plugin
/// cannot say which are secret).
pub(crate) async fn inspect(
    state: &Engine,
    principal: &Principal,
    name: &str,
) -> Result<(BackendRecord, Map<String, Value>), EngineError> {
    principal.require_admin("admin:backends:read")?;
    let record = find(state, name).await?;
    let plain = state.sealer().open(&config_context(name), &record.sealed_config).map_err(|e| {
        tracing::error!(backend = %name, error = %e, "stored backend configuration cannot be opened");
        EngineError::new(ErrorCode::Internal, "the stored configuration cannot be decrypted")
    })?;
    let config: Map<String, Value> = serde_json::from_slice(&plain).unwrap_or_default();
    let schema = match describe(state, &record.plugin).await {
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
    Ok((record, masked))
}

//! `creddy backend add|ls|inspect|rm`.
//!
//! `backend add` builds the configuration from `--config FILE.json`, then `--set` and
//! `--set-file` (typed by the plugin's schema), and, when stdin is a terminal, prompts for
//! every field still missing: secrets hidden, defaults shown (Enter accepts them), file
//! fields read from a path, arrays as comma-separated lists. Without a terminal, a missing
//! required field is an error (exit 2). The server then configures and validates the plugin
//! and saves nothing the upstream rejects.

use std::io::IsTerminal;
use std::path::Path;

use creddy_api::backends::{AddBackend, AddedBackend, Backend, BackendDetail, Draining};
use creddy_plugin::host::Description;
use creddy_plugin::protocol::{ConfigField, ConfigSchema, FieldType};
use serde_json::{Map, Value, json};

use crate::cli::{BackendCmd, Format, Global};
use crate::client::Client;
use crate::credentials::admin_client;
use crate::failure::{EXIT_OTHER, Failure, Result};
use crate::output::{confirm, print_json, print_table, relative};

/// Runs a backend subcommand.
pub async fn run(global: &Global, cmd: BackendCmd) -> Result<()> {
    let client = admin_client(global)?;
    match cmd {
        BackendCmd::Add {
            plugin,
            name,
            config,
            set,
            set_file,
            skip_validate,
        } => {
            let inputs = Inputs {
                config_file: config.as_deref(),
                set: &set,
                set_file: &set_file,
            };
            add(global, &client, &plugin, name, &inputs, !skip_validate).await
        }
        BackendCmd::Ls => list(global, &client).await,
        BackendCmd::Inspect { name } => {
            let detail: BackendDetail = client.get(&["v1", "admin", "backends", &name]).await?;
            print_json(&detail)
        }
        BackendCmd::Rm { name, force, wait } => {
            let segments = ["v1", "admin", "backends", name.as_str()];
            let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
            let draining: Option<Draining> =
                client.delete_json_with_query(&segments, query).await?;
            if global.list_format()? == Format::Json {
                return match &draining {
                    Some(answer) => print_json(answer),
                    None => print_json(&json!({"name": name, "state": "removed"})),
                };
            }
            if let Some(answer) = draining {
                eprintln!(
                    "Backend '{name}' is draining: {} credentials are being revoked; it disappears when they are (creddy backend ls shows its state)",
                    answer.leases
                );
                if !wait {
                    return Ok(());
                }
                wait_until_gone(&client, &name).await?;
            }
            confirm(&format!("Backend '{name}' removed"));
            Ok(())
        }
    }
}

/// Where configuration values come from on the command line.
struct Inputs<'a> {
    config_file: Option<&'a Path>,
    set: &'a [String],
    set_file: &'a [String],
}

fn field<'a>(schema: &'a ConfigSchema, plugin: &str, key: &str) -> Result<&'a ConfigField> {
    schema.fields.iter().find(|f| f.name == key).ok_or_else(|| {
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        Failure::usage(format!(
            "plugin '{plugin}' has no configuration field '{key}'"
        ))
        .hint(format!("its fields are: {}", names.join(", ")))
    })
}

fn split_pair<'a>(flag: &str, pair: &'a str) -> Result<(&'a str, &'a str)> {
    pair.split_once('=').ok_or_else(|| {
        Failure::usage(format!(
            "{flag} expects KEY=VALUE, got '{}'",
            pair.chars().take(40).collect::<String>()
        ))
    })
}

fn read_file(path: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {path}: {e}")))?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_owned())
}

/// The configuration given by flags, typed by the schema.
fn from_flags(
    schema: &ConfigSchema,
    plugin: &str,
    inputs: &Inputs<'_>,
) -> Result<Map<String, Value>> {
    let mut config = match inputs.config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(Failure::usage(format!(
                        "{} must hold a JSON object of the plugin's fields",
                        path.display()
                    )));
                }
            }
        }
        None => Map::new(),
    };
    for pair in inputs.set {
        let (key, value) = split_pair("--set", pair)?;
        let field_type = field(schema, plugin, key)?.field_type;
        if field_type == FieldType::Secret {
            // Never the value: only its name.
            eprintln!(
                "Warning: --set {key}=… puts a secret in the process list and your shell history; use --set-file {key}=PATH"
            );
        }
        config.insert(key.to_owned(), field_type.parse(value));
    }
    for pair in inputs.set_file {
        let (key, path) = split_pair("--set-file", pair)?;
        let field_type = field(schema, plugin, key)?.field_type;
        config.insert(key.to_owned(), field_type.parse(&read_file(path)?));
    }
    Ok(config)
}

/// The label of a prompt: `<description> [<name>, required|default …|optional(, hidden)]`.
fn label(field: &ConfigField) -> String {
    let mut notes = vec![field.name.clone()];
    match (&field.default, field.required) {
        (_, true) => notes.push("required".into()),
        (Some(default), false) => notes.push(format!("default {default}")),
        (None, false) => notes.push("optional".into()),
    }
    match field.field_type {
        FieldType::Secret => notes.push("hidden".into()),
        FieldType::File => notes.push("path to a file".into()),
        FieldType::Array => notes.push("comma-separated".into()),
        _ => {}
    }
    format!("{} [{}]", field.description, notes.join(", "))
}

/// Asks for every field the flags left out; Enter keeps the default or skips an optional one.
fn prompt_missing(schema: &ConfigSchema, config: &mut Map<String, Value>) -> Result<()> {
    let failed = |e: dialoguer::Error| Failure::new(EXIT_OTHER, format!("prompt failed: {e}"));
    let missing: Vec<&ConfigField> = schema
        .fields
        .iter()
        .filter(|f| !config.contains_key(&f.name))
        .collect();
    for field in missing {
        loop {
            let answer = match field.field_type {
                FieldType::Secret => dialoguer::Password::new()
                    .with_prompt(label(field))
                    .allow_empty_password(true)
                    .interact()
                    .map_err(failed)?,
                _ => dialoguer::Input::<String>::new()
                    .with_prompt(label(field))
                    .allow_empty(true)
                    .interact_text()
                    .map_err(failed)?,
            };
            if answer.is_empty() {
                if field.required {
                    eprintln!("{} is required", field.name);
                    continue;
                }
                break;
            }
            let text = if field.field_type == FieldType::File {
                read_file(&answer)?
            } else {
                answer
            };
            config.insert(field.name.clone(), field.field_type.parse(&text));
            break;
        }
    }
    Ok(())
}

async fn add(
    global: &Global,
    client: &Client,
    plugin: &str,
    name: Option<String>,
    inputs: &Inputs<'_>,
    validate: bool,
) -> Result<()> {
    let format = global.list_format()?;
    let name = name.unwrap_or_else(|| plugin.to_owned());
    // The name first: nobody should type a master key for a backend that cannot be added.
    creddy_core::names::check_backend_name(&name)
        .map_err(|e| Failure::usage(format!("invalid backend name '{name}': {e}")))?;
    if client
        .get::<BackendDetail>(&["v1", "admin", "backends", &name])
        .await
        .is_ok()
    {
        return Err(
            Failure::usage(format!("a backend named '{name}' already exists")).hint(format!(
                "choose another --name, or remove it first: creddy backend rm {name}"
            )),
        );
    }
    let description: Description = client.get(&["v1", "admin", "plugins", plugin]).await?;
    eprintln!(
        "Adding backend '{name}' (plugin {plugin} {})",
        description.info.version
    );
    let schema = description.config_schema;
    let mut config = from_flags(&schema, plugin, inputs)?;
    if std::io::stdin().is_terminal() {
        prompt_missing(&schema, &mut config)?;
    }
    let mut with_defaults = config.clone();
    schema.apply_defaults(&mut with_defaults);
    let missing = schema.missing_required(&with_defaults);
    if !missing.is_empty() {
        return Err(Failure::usage(format!("missing required field: {}", missing.join(", ")))
            .hint("give them with --set KEY=VALUE, --set-file KEY=PATH or --config FILE.json, or run on a terminal to be prompted"));
    }
    if validate {
        eprint!("Validating with {plugin}... ");
    }
    let body = AddBackend {
        plugin: plugin.to_owned(),
        name: Some(name.clone()),
        config,
        validate: Some(validate),
    };
    let added: AddedBackend = match client.post(&["v1", "admin", "backends"], &body).await {
        Ok(v) => v,
        Err(e) => {
            if validate {
                eprintln!("failed");
            }
            return Err(e);
        }
    };
    if validate {
        eprintln!("ok");
    }
    for warning in &added.warnings {
        eprintln!("Warning: {warning}");
    }
    if format == Format::Json {
        print_json(&added)?;
    }
    confirm(&format!("Backend '{name}' added (type: {plugin})"));
    Ok(())
}

async fn list(global: &Global, client: &Client) -> Result<()> {
    let format = global.list_format()?;
    let rows: Vec<Backend> = client.get(&["v1", "admin", "backends"]).await?;
    if format == Format::Json {
        return print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .into_iter()
        .map(|b| {
            vec![
                b.name,
                b.plugin,
                b.plugin_version,
                b.state,
                b.active_leases.to_string(),
                relative(b.created_at),
            ]
        })
        .collect();
    print_table(
        &["NAME", "TYPE", "VERSION", "STATE", "LEASES", "CREATED"],
        &table,
    );
    Ok(())
}

/// Polls until the draining backend is gone, showing what is left on a terminal.
async fn wait_until_gone(client: &Client, name: &str) -> Result<()> {
    let spinner = crate::output::spinner(&format!("waiting for backend '{name}' to drain"));
    loop {
        let shown: Result<BackendDetail> = client.get(&["v1", "admin", "backends", name]).await;
        match shown {
            Err(e) if e.api_code == Some(creddy_api::ErrorCode::BackendNotFound) => break,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(())
}

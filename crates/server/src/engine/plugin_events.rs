//! `plugin.*` audit events: what the server notices about installed plugins at start and at
//! each reload (§13), by comparing the plugin directory with the last snapshot it recorded:
//! `plugin.installed`, `.upgraded`, `.removed`, `.reloaded`, and `.integrity_failed` for a
//! plugin whose executable no longer matches its recorded SHA-256 or its signed manifest, or
//! that cannot be used.

use std::collections::BTreeMap;

use creddy_core::audit::{Action, Actor, AuditEvent, Outcome};
use creddy_plugin::host::verify::sha256_file;
use creddy_plugin::installed::InstalledPlugin;
use serde_json::{Value, json};

use crate::engine::state::Engine;

/// The meta key of the snapshot.
const SNAPSHOT: &str = "plugins_seen";

/// Records what changed among the installed plugins since the last snapshot; `reloaded`
/// adds `plugin.reloaded` for each plugin in use.
pub(crate) async fn record_changes(
    state: &Engine,
    reloaded: bool,
) -> Result<(), creddy_store::StoreError> {
    let settings = state.plugin_settings();
    let now = state.clock().now();
    let event = |action: Action, details: Value| {
        AuditEvent::new(action, Actor::system(), now).with_details(details)
    };
    let mut events = Vec::new();
    let mut current: BTreeMap<String, Value> = BTreeMap::new();
    // Plugins that failed their check are not "removed": they keep their last good entry.
    let mut failed: Vec<String> = Vec::new();
    for entry in InstalledPlugin::list(&settings.dir, settings.allow_unsigned) {
        let plugin = match entry {
            Ok(p) => p,
            Err(e) => {
                events.push(
                    event(
                        Action::PluginIntegrityFailed,
                        json!({"error": e.to_string()}),
                    )
                    .with_outcome(Outcome::Failure),
                );
                continue;
            }
        };
        let r = &plugin.record;
        let facts = json!({"name": r.name, "version": r.version, "sha256": r.sha256,
            "signed": r.signed, "signer": r.signer});
        // The same checks as before every start: a signed installation must match its
        // signed manifest, and every binary its recorded hash.
        match creddy_plugin::host::verify_installation(&plugin, &settings.trusted_keys) {
            Ok(()) => {
                current.insert(r.name.clone(), facts);
            }
            Err(e) => {
                failed.push(r.name.clone());
                events.push(
                    event(
                        Action::PluginIntegrityFailed,
                        json!({"name": r.name, "version": r.version, "expected_sha256": r.sha256,
                        "sha256": sha256_file(&plugin.binary).ok(), "error": e.problem}),
                    )
                    .with_outcome(Outcome::Failure),
                );
            }
        }
    }
    let seen: BTreeMap<String, Value> = state
        .store()
        .meta(SNAPSHOT)
        .await?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for (name, facts) in &current {
        match seen.get(name) {
            None => events.push(event(Action::PluginInstalled, facts.clone())),
            Some(before) if before != facts => {
                let mut details = facts.clone();
                details["previous_version"] = before["version"].clone();
                details["previous_sha256"] = before["sha256"].clone();
                events.push(event(Action::PluginUpgraded, details));
            }
            Some(_) if reloaded => events.push(event(Action::PluginReloaded, facts.clone())),
            Some(_) => {}
        }
    }
    for (name, before) in &seen {
        if failed.contains(name) {
            current.insert(name.clone(), before.clone());
        } else if !current.contains_key(name) {
            let mut details = before.clone();
            details["name"] = json!(name);
            events.push(event(Action::PluginRemoved, details));
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let snapshot = serde_json::to_string(&current).unwrap_or_default();
    state.store().meta_set(SNAPSHOT, &snapshot, &events).await
}

//! The live backends: one supervised plugin process per configured backend.
//!
//! At start every stored backend's configuration is unsealed and handed to a new plugin
//! process (after the binary's integrity check). A backend whose plugin cannot start stays
//! listed in state `error` with the reason logged; the others serve. **Master credentials
//! leave this process only inside the plugin's `configure` call.**

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use creddy_plugin::host::{LaunchSpec, PluginProcess};
use creddy_plugin::installed::InstalledPlugin;
use creddy_store::BackendRecord;
use serde_json::Value;

use crate::engine::sealing::Sealer;

/// One configured backend and its plugin process.
#[derive(Debug)]
pub struct LiveBackend {
    /// The backend's name.
    pub name: String,
    /// The plugin type.
    pub plugin: String,
    /// The plugin's version.
    pub version: String,
    /// The running process, or why it is not running.
    pub process: Result<PluginProcess, String>,
    /// The stored (sealed) configuration it was started with: another node changed the
    /// backend when the stored one differs.
    pub sealed_config: String,
}

impl LiveBackend {
    /// `ready` or `error`.
    pub fn state(&self) -> &'static str {
        if self.process.is_ok() {
            "ready"
        } else {
            "error"
        }
    }
}

/// The context under which a backend's configuration is sealed.
pub fn config_context(backend: &str) -> String {
    format!("backend-config:{backend}")
}

/// The live backends by name.
#[derive(Debug, Default)]
pub struct Backends {
    live: RwLock<BTreeMap<String, Arc<LiveBackend>>>,
}

/// Where and how plugins are run.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The plugin directory.
    pub dir: std::path::PathBuf,
    /// Whether unsigned plugins may run.
    pub allow_unsigned: bool,
    /// Caps call timeouts (tests).
    pub timeout_cap: Option<std::time::Duration>,
    /// Keys trusted for signed plugin manifests.
    pub trusted_keys: Vec<creddy_plugin::signing::TrustedKey>,
}

impl PluginSettings {
    /// The launch spec for a backend of plugin `plugin` with `config`.
    pub fn spec(
        &self,
        backend: &str,
        plugin: &str,
        config: Value,
    ) -> Result<(LaunchSpec, String), String> {
        let installed = InstalledPlugin::load(&self.dir, plugin, self.allow_unsigned)
            .map_err(|e| e.to_string())?;
        let mut spec = LaunchSpec::for_plugin(
            backend,
            &installed,
            &self.trusted_keys,
            config,
            crate::VERSION,
        );
        spec.timeout_cap = self.timeout_cap;
        Ok((spec, installed.record.version))
    }
}

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backends {
    /// Starts the plugin of every stored backend.
    pub async fn start_all(
        records: &[BackendRecord],
        sealer: &Sealer,
        plugins: &PluginSettings,
    ) -> Self {
        let backends = Self::default();
        for record in records {
            let live = start(record, sealer, plugins).await;
            if let Err(reason) = &live.process {
                tracing::error!(backend = %record.name, "backend not available: {reason}");
            }
            backends.swap_in(live).await;
        }
        backends
    }

    /// The backend of that name.
    pub fn get(&self, name: &str) -> Option<Arc<LiveBackend>> {
        lock_read(&self.live).get(name).cloned()
    }

    /// All backends by name.
    pub fn all(&self) -> Vec<Arc<LiveBackend>> {
        lock_read(&self.live).values().cloned().collect()
    }

    /// Adds or replaces a backend; a replaced plugin process is stopped once the new one is
    /// in place, and the replaced backend is returned.
    pub async fn swap_in(&self, live: LiveBackend) -> Option<Arc<LiveBackend>> {
        let replaced = lock_write(&self.live).insert(live.name.clone(), Arc::new(live));
        if let Some(Ok(process)) = replaced.as_ref().map(|old| &old.process) {
            process.stop().await;
        }
        replaced
    }

    /// Removes a backend and stops its plugin.
    pub async fn remove(&self, name: &str) {
        let removed = lock_write(&self.live).remove(name);
        if let Some(Ok(process)) = removed.as_ref().map(|l| &l.process) {
            process.stop().await;
        }
    }

    /// Starts a new plugin process for every stored backend (re-reading the installed
    /// plugins), swaps it in, and only then stops the old one. Returns the names reloaded and
    /// those whose plugin version changed.
    pub async fn reload(
        &self,
        records: &[BackendRecord],
        sealer: &Sealer,
        plugins: &PluginSettings,
    ) -> (Vec<String>, Vec<String>) {
        let (mut loaded, mut upgraded) = (Vec::new(), Vec::new());
        for record in records {
            let mut live = start(record, sealer, plugins).await;
            if let Ok(process) = &live.process {
                live.version = process.started().hello.plugin.version;
            }
            let version = live.version.clone();
            if self
                .swap_in(live)
                .await
                .is_some_and(|old| old.version != version)
            {
                upgraded.push(record.name.clone());
            }
            loaded.push(record.name.clone());
        }
        (loaded, upgraded)
    }

    /// Brings the live backends in line with the stored ones: starts those added elsewhere,
    /// restarts those whose stored configuration or plugin differs, stops those removed.
    /// Returns the names that changed.
    pub async fn align(
        &self,
        records: &[BackendRecord],
        sealer: &Sealer,
        plugins: &PluginSettings,
    ) -> Vec<String> {
        let stale: Vec<&BackendRecord> = records
            .iter()
            .filter(|r| {
                self.get(&r.name).is_none_or(|live| {
                    live.sealed_config != r.sealed_config || live.plugin != r.plugin
                })
            })
            .collect();
        let mut changed: Vec<String> = stale.iter().map(|r| r.name.clone()).collect();
        for record in stale {
            self.swap_in(start(record, sealer, plugins).await).await;
        }
        let gone: Vec<String> = lock_read(&self.live)
            .keys()
            .filter(|name| !records.iter().any(|r| &r.name == *name))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name).await;
            changed.push(name);
        }
        changed
    }

    /// Stops every plugin.
    pub async fn stop_all(&self) {
        let all: Vec<Arc<LiveBackend>> = std::mem::take(&mut *lock_write(&self.live))
            .into_values()
            .collect();
        for live in all {
            if let Ok(process) = &live.process {
                process.stop().await;
            }
        }
    }
}

async fn start(record: &BackendRecord, sealer: &Sealer, plugins: &PluginSettings) -> LiveBackend {
    let process = async {
        let plain = sealer
            .open(&config_context(&record.name), &record.sealed_config)
            .map_err(|e| e.to_string())?;
        let config: Value = serde_json::from_slice(&plain)
            .map_err(|_| "the stored configuration is unreadable".to_owned())?;
        let (spec, _) = plugins.spec(&record.name, &record.plugin, config)?;
        PluginProcess::start(spec).await.map_err(|e| e.to_string())
    }
    .await;
    LiveBackend {
        name: record.name.clone(),
        plugin: record.plugin.clone(),
        version: record.plugin_version.clone(),
        process,
        sealed_config: record.sealed_config.clone(),
    }
}

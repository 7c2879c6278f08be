//! Installed plugins on disk, one directory rule for server and CLI:
//!
//! ```text
//! <plugin dir>/<name>/creddy-<name>      the executable (0755)
//! <plugin dir>/<name>/install.json       {"name","version","sha256","signed","signer","source","installed_at"}
//! ```
//!
//! The host reads `install.json` before every start and runs the binary only if its SHA-256
//! still matches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record written at installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of the executable.
    pub sha256: String,
    /// Whether it came with a verified signature.
    pub signed: bool,
    /// The key id of the signer, when signed.
    pub signer: Option<String>,
    /// Where it came from (registry URL, path or URL).
    pub source: String,
    /// When it was installed (RFC 3339).
    pub installed_at: String,
}

/// An installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPlugin {
    /// Its install record.
    pub record: InstallRecord,
    /// The executable.
    pub binary: PathBuf,
}

/// Why an installed plugin cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstalledError {
    /// Nothing is installed under that name.
    #[error("plugin '{0}' is not installed")]
    NotInstalled(String),
    /// The install record is missing or unreadable.
    #[error("plugin '{name}' has an unreadable install.json ({problem}); reinstall it")]
    BadRecord {
        /// The plugin.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The plugin is unsigned and unsigned plugins are not allowed.
    #[error("plugin '{0}' is unsigned; set plugins.allow_unsigned = true to run unsigned plugins")]
    Unsigned(String),
}

/// True for names a plugin may have: a lowercase letter then up to 31 of `[a-z0-9-]`.
pub fn is_plugin_name(name: &str) -> bool {
    creddy_core::names::check_backend_name(name).is_ok()
}

impl InstalledPlugin {
    /// Reads the plugin `name` from `plugin_dir`.
    pub fn load(
        plugin_dir: &Path,
        name: &str,
        allow_unsigned: bool,
    ) -> Result<Self, InstalledError> {
        if !is_plugin_name(name) {
            return Err(InstalledError::NotInstalled(name.to_owned()));
        }
        let dir = plugin_dir.join(name);
        let text = match std::fs::read_to_string(dir.join("install.json")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InstalledError::NotInstalled(name.to_owned()));
            }
            Err(e) => {
                return Err(InstalledError::BadRecord {
                    name: name.to_owned(),
                    problem: e.to_string(),
                });
            }
        };
        let record: InstallRecord =
            serde_json::from_str(&text).map_err(|e| InstalledError::BadRecord {
                name: name.to_owned(),
                problem: e.to_string(),
            })?;
        if record.name != name {
            return Err(InstalledError::BadRecord {
                name: name.to_owned(),
                problem: format!("it names plugin '{}'", record.name),
            });
        }
        if !record.signed && !allow_unsigned {
            return Err(InstalledError::Unsigned(name.to_owned()));
        }
        Ok(Self {
            binary: dir.join(format!("creddy-{name}")),
            record,
        })
    }

    /// Every installed plugin in `plugin_dir`, by name, with the ones that failed to load.
    pub fn list(plugin_dir: &Path, allow_unsigned: bool) -> Vec<Result<Self, InstalledError>> {
        let mut names: Vec<String> = std::fs::read_dir(plugin_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| is_plugin_name(n))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|n| Self::load(plugin_dir, n, allow_unsigned))
            .collect()
    }

    /// Writes `record` as `install.json` for a plugin directory.
    pub fn write_record(dir: &Path, record: &InstallRecord) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("install.json"), text + "\n")
    }
}

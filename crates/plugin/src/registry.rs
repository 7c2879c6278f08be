//! Plugin registries and installation.
//!
//! A registry is laid out as:
//!
//! ```text
//! <registry>/index.json                       + index.json.minisig
//! <registry>/<name>/<version>/manifest.json   + manifest.json.minisig
//! <registry>/<name>/<version>/<filename>      (binaries)
//! ```
//!
//! This module parses and checks what a registry serves (signatures, names, versions,
//! sizes, SHA-256, protocol and creddy versions) and installs a verified release atomically:
//! everything is written to a temporary directory inside the plugin directory and renamed
//! into place. Fetching the files (local directory or HTTP) is the caller's business.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::installed::{InstallRecord, InstalledPlugin, is_plugin_name};
use crate::protocol::PROTOCOL_VERSIONS;
use crate::signing::{SignatureError, TrustedKey, verify};
use crate::version::Version;

/// The file of a workspace build's registry (`cargo xtask registry`) that holds the public
/// key it is signed with; `creddy` honours it only beside itself, never in a release layout.
pub const WORKSPACE_KEY_FILE: &str = "workspace-key.pub";

/// The largest plugin binary accepted.
pub const MAX_BINARY_SIZE: u64 = 256 * 1024 * 1024;

/// What can go wrong resolving or installing a plugin.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A signature check failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The registry serves something malformed or inconsistent.
    #[error("the registry is inconsistent: {0}")]
    Invalid(String),
    /// The plugin or version does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The checksum or size of the binary is wrong.
    #[error("{0}")]
    Checksum(String),
    /// The plugin cannot run with this creddy.
    #[error("{0}")]
    Incompatible(String),
    /// Writing the installation failed.
    #[error("installing into {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One plugin in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// One line for people.
    pub description: String,
    /// The newest version.
    pub latest: String,
    /// Every version offered.
    pub versions: Vec<String>,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always 1.
    pub schema: u32,
    /// Plugins by name.
    pub plugins: BTreeMap<String, IndexEntry>,
}

/// One platform binary of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    /// `linux`, `darwin` or `windows`.
    pub os: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// The file name beside the manifest.
    pub filename: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// An absolute URL, when not beside the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `manifest.json` of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 1.
    pub schema: u32,
    /// The plugin's name.
    pub name: String,
    /// The release's version.
    pub version: String,
    /// One line for people.
    pub description: String,
    /// The protocol version it speaks.
    pub protocol_version: u32,
    /// The oldest creddy that can run it.
    pub min_creddy_version: String,
    /// When it was released.
    pub released_at: String,
    /// Its binaries.
    pub binaries: Vec<Binary>,
}

/// This machine's platform in registry terms.
pub fn current_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (std::env::consts::OS, arch)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Index {
    /// Checks the signature, then parses.
    pub fn verified(
        bytes: &[u8],
        signature: &str,
        trusted: &[TrustedKey],
    ) -> Result<(Self, String), RegistryError> {
        let signer = verify(trusted, bytes, signature, "index.json")?;
        let index: Index = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Invalid(format!("index.json: {e}")))?;
        Ok((index, signer))
    }

    /// The version to install: the requested one (a leading `v` tolerated) or the latest.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Result<String, RegistryError> {
        let entry = self.plugins.get(name).ok_or_else(|| {
            RegistryError::NotFound(format!("the registry has no plugin named '{name}'"))
        })?;
        let wanted = version.unwrap_or(&entry.latest);
        let wanted_v = Version::parse(wanted)
            .ok_or_else(|| RegistryError::NotFound(format!("'{wanted}' is not a version")))?;
        entry
            .versions
            .iter()
            .find(|v| Version::parse(v).as_ref() == Some(&wanted_v))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "the registry has no version {wanted} of '{name}' (it has {})",
                    entry.versions.join(", ")
                ))
            })
    }
}

impl Manifest {
    /// Checks the signature, that the manifest is for `name` at `version` (the path it was
    /// fetched from), and that this creddy can run it.
    pub fn verified(
        bytes: &[u8],
        signature: &str,
        trusted: &[TrustedKey],
        name: &str,
        version: &str,
        host_version: &str,
    ) -> Result<(Self, String), RegistryError> {
        let signer = verify(
            trusted,
            bytes,
            signature,
            &format!("{name}/{version}/manifest.json"),
        )?;
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Invalid(format!("manifest.json: {e}")))?;
        let same_version = Version::parse(&manifest.version).is_some()
            && Version::parse(&manifest.version) == Version::parse(version);
        if manifest.name != name || !same_version {
            return Err(RegistryError::Invalid(format!(
                "the manifest at {name}/{version} describes {}@{}",
                manifest.name, manifest.version
            )));
        }
        manifest.check_compatible(host_version)?;
        Ok((manifest, signer))
    }

    fn check_compatible(&self, host_version: &str) -> Result<(), RegistryError> {
        if !PROTOCOL_VERSIONS.contains(&self.protocol_version) {
            return Err(RegistryError::Incompatible(format!(
                "{} {} speaks plugin protocol {}, which this creddy does not ({PROTOCOL_VERSIONS:?}); upgrade creddy",
                self.name, self.version, self.protocol_version
            )));
        }
        let needed = Version::parse(&self.min_creddy_version);
        let have = Version::parse(host_version);
        if needed.is_none() || have.is_none() || needed > have {
            return Err(RegistryError::Incompatible(format!(
                "{} {} needs creddy {} or newer; this is {host_version}",
                self.name, self.version, self.min_creddy_version
            )));
        }
        Ok(())
    }

    /// The binary for this machine.
    pub fn binary_for_this_platform(&self) -> Result<&Binary, RegistryError> {
        let (os, arch) = current_platform();
        self.binaries
            .iter()
            .find(|b| b.os == os && b.arch == arch)
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "{} {} has no binary for {os}/{arch}",
                    self.name, self.version
                ))
            })
    }
}

impl Binary {
    /// Checks a downloaded binary's size and SHA-256 against the manifest.
    pub fn check(&self, bytes: &[u8]) -> Result<(), RegistryError> {
        if bytes.len() as u64 != self.size {
            return Err(RegistryError::Checksum(format!(
                "{} is {} bytes but the manifest says {}; the download is incomplete or altered",
                self.filename,
                bytes.len(),
                self.size
            )));
        }
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(&self.sha256) {
            return Err(RegistryError::Checksum(format!(
                "SHA-256 mismatch for {}: expected {}, got {actual}; the binary was altered, do not use this registry",
                self.filename, self.sha256
            )));
        }
        Ok(())
    }
}

/// A verified release ready to install.
#[derive(Debug)]
pub struct Release {
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's bytes and signature, kept for re-verification before every start.
    pub manifest_bytes: Vec<u8>,
    /// The manifest's signature.
    pub manifest_signature: String,
    /// The binary.
    pub binary: Vec<u8>,
    /// The signer's key id, `None` for an unsigned binary.
    pub signer: Option<String>,
    /// Where it came from.
    pub source: String,
}

/// Writes a release into `<plugin_dir>/<name>/` atomically and returns its record.
pub fn install(
    plugin_dir: &Path,
    release: &Release,
    now_rfc3339: &str,
) -> Result<InstallRecord, RegistryError> {
    let name = &release.manifest.name;
    if !is_plugin_name(name) {
        return Err(RegistryError::Invalid(format!(
            "'{name}' is not a valid plugin name"
        )));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RegistryError::Io { path, source }
    };
    std::fs::create_dir_all(plugin_dir).map_err(io(plugin_dir))?;
    let mut suffix = [0u8; 6];
    creddy_core::secret::fill_random(&mut suffix);
    let staging = plugin_dir.join(format!(".installing-{name}-{}", hex::encode(suffix)));
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let result = (|| {
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&staging))?;
        let binary = staging.join(format!("creddy-{name}"));
        std::fs::write(&binary, &release.binary).map_err(io(&binary))?;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&binary))?;
        if release.signer.is_some() {
            std::fs::write(staging.join("manifest.json"), &release.manifest_bytes)
                .map_err(io(&staging))?;
            std::fs::write(
                staging.join("manifest.json.minisig"),
                &release.manifest_signature,
            )
            .map_err(io(&staging))?;
        }
        let record = InstallRecord {
            name: name.clone(),
            version: release.manifest.version.clone(),
            sha256: sha256_hex(&release.binary),
            signed: release.signer.is_some(),
            signer: release.signer.clone(),
            source: release.source.clone(),
            installed_at: now_rfc3339.to_owned(),
        };
        InstalledPlugin::write_record(&staging, &record).map_err(io(&staging))?;
        let target = plugin_dir.join(name);
        let retired = plugin_dir.join(format!(".retired-{name}-{}", hex::encode(suffix)));
        if target.exists() {
            std::fs::rename(&target, &retired).map_err(io(&target))?;
        }
        std::fs::rename(&staging, &target).map_err(io(&target))?;
        let _ = std::fs::remove_dir_all(&retired);
        Ok(record)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Re-checks a signed installation before it runs: the stored manifest's signature, and
/// that the manifest's SHA-256 for this platform is the one recorded at installation.
pub fn verify_installed(
    plugin: &InstalledPlugin,
    trusted: &[TrustedKey],
) -> Result<(), RegistryError> {
    if !plugin.record.signed {
        return Ok(());
    }
    verify_manifest(&plugin.binary, &plugin.record.sha256, trusted)
}

/// Checks the signed manifest stored beside `binary` (`creddy-<name>`) and that it lists
/// `sha256` for this platform.
pub fn verify_manifest(
    binary: &Path,
    sha256: &str,
    trusted: &[TrustedKey],
) -> Result<(), RegistryError> {
    let dir = binary.parent().unwrap_or(Path::new("."));
    let name = binary
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("creddy-"))
        .unwrap_or("plugin");
    let io = |source| RegistryError::Io {
        path: dir.to_owned(),
        source,
    };
    let bytes = std::fs::read(dir.join("manifest.json")).map_err(io)?;
    let signature = std::fs::read_to_string(dir.join("manifest.json.minisig")).map_err(io)?;
    verify(
        trusted,
        &bytes,
        &signature,
        &format!("the installed manifest of {name}"),
    )?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let listed = manifest.binary_for_this_platform()?;
    if !listed.sha256.eq_ignore_ascii_case(sha256) {
        return Err(RegistryError::Checksum(format!(
            "the installed manifest of {name} does not list the installed binary"
        )));
    }
    Ok(())
}

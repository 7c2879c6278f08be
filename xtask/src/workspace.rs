//! The workspace as the release tooling sees it: where it is, cargo builds, the first-party
//! plugins and their registry, and the keys kept under `target/xtask/`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use creddy_plugin::publish::{Publish, Signer, SigningKey, publish};
use creddy_plugin::registry::WORKSPACE_KEY_FILE;

/// The first-party plugins: package `creddy-<name>`, binary `creddy-<name>`.
pub const PLUGINS: &[&str] = &["daytona", "github"];

/// The checkout and its build directory.
#[derive(Debug)]
pub struct Workspace {
    /// The repository root.
    pub root: PathBuf,
    /// `CARGO_TARGET_DIR` or `<root>/target`.
    pub target: PathBuf,
}

/// What a plugin says of itself (`creddy-<name> info`).
#[derive(Debug)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line for people.
    pub description: String,
    /// The oldest creddy it runs with.
    pub min_creddy_version: String,
}

impl Workspace {
    /// The workspace this tool was built from.
    pub fn locate() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        Self { root, target }
    }

    /// Builds `creddy` and the first-party plugins; returns the profile's output directory.
    /// `release_key` is built into `creddy` (§17); without it the build carries none.
    pub fn build(&self, release: bool, release_key: Option<&str>) -> Result<PathBuf, String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(&self.root)
            .args(["build", "--locked", "-p", "creddy"]);
        for plugin in PLUGINS {
            command.args(["-p", &format!("creddy-{plugin}")]);
        }
        if release {
            command.arg("--release");
        }
        match release_key {
            Some(key) => command.env("CREDDY_RELEASE_PUBKEY", key),
            None => command.env_remove("CREDDY_RELEASE_PUBKEY"),
        };
        eprintln!(
            "Building creddy and the plugins ({} profile)",
            if release { "release" } else { "dev" }
        );
        let status = command
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build failed ({status})"));
        }
        Ok(self.target.join(if release { "release" } else { "debug" }))
    }

    /// The key kept in `target/xtask/<name>.key` (an unencrypted minisign secret key, 0600),
    /// created on first use.
    pub fn kept_key(&self, name: &str) -> Result<(SigningKey, PathBuf), String> {
        let path = self.target.join("xtask").join(format!("{name}.key"));
        if path.exists() {
            return Ok((read_key(&path)?, path));
        }
        let key = SigningKey::generate();
        let dir = path.parent().unwrap_or(&self.target);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, key.to_minisign().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((key, path))
    }
}

/// Reads an unencrypted minisign secret key file.
pub fn read_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
    SigningKey::from_minisign(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Asks a plugin binary about itself.
pub fn plugin_info(binary: &Path) -> Result<PluginInfo, String> {
    let output = Command::new(binary)
        .arg("info")
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{} info: {e}", binary.display()))?;
    let field = |name: &str| {
        info[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{} info has no {name}", binary.display()))
    };
    Ok(PluginInfo {
        name: field("name")?,
        version: field("version")?,
        description: field("description")?,
        min_creddy_version: field("min_creddy_version")?,
    })
}

/// Signs the first-party plugins in `binaries` (`(binary, info)`) into a fresh registry at
/// `dir`.
pub fn write_registry(
    dir: &Path,
    signer: &Signer<'_>,
    binaries: &[(PathBuf, PluginInfo)],
) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let releases: Vec<Publish<'_>> = binaries
        .iter()
        .map(|(binary, info)| Publish {
            name: &info.name,
            version: &info.version,
            description: &info.description,
            binary,
            min_creddy_version: &info.min_creddy_version,
        })
        .collect();
    publish(dir, signer, &releases).map_err(|e| format!("writing {}: {e}", dir.display()))
}

/// Seconds since the epoch: `SOURCE_DATE_EPOCH` for reproducible builds, else now.
pub fn timestamp() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

/// `cargo xtask registry`: builds the workspace and signs its plugins into
/// `target/<profile>/registry` with the workspace key, whose public half goes beside them.
pub fn workspace_registry(release: bool) -> Result<PathBuf, String> {
    let workspace = Workspace::locate();
    let profile = workspace.build(release, None)?;
    let (key, _) = workspace.kept_key("workspace-registry")?;
    let binaries = PLUGINS
        .iter()
        .map(|name| {
            let binary = profile.join(format!("creddy-{name}"));
            plugin_info(&binary).map(|info| (binary, info))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let dir = profile.join("registry");
    let signer = Signer {
        key: &key,
        timestamp: timestamp(),
    };
    write_registry(&dir, &signer, &binaries)?;
    std::fs::write(dir.join(WORKSPACE_KEY_FILE), key.public_key_file())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let names: Vec<String> = binaries
        .iter()
        .map(|(_, i)| format!("{} {}", i.name, i.version))
        .collect();
    eprintln!(
        "\u{2713} Registry {} signed with the workspace key {} ({})",
        dir.display(),
        key.key_id(),
        names.join(", ")
    );
    Ok(profile)
}

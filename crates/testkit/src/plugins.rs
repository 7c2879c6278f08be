//! Plugins for tests: the scriptable test plugin, installed under any name.
//!
//! The binary `creddy-test-plugin` is built with the workspace; a test installs a copy as
//! `<dir>/<name>/creddy-<name>` (mode 0755) and gets its SHA-256, exactly as an installed
//! plugin is laid out. The name picks start-up misbehaviour (see the binary's docs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use creddy_plugin::host::verify::sha256_file;
use creddy_plugin::installed::{InstallRecord, InstalledPlugin};

/// The directory of the workspace's build output (`target/debug` or `target/release`): the
/// parent of `deps/` for a test binary, the binary's own directory otherwise.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .unwrap_or_else(|| panic!("unexpected binary location {}", exe.display()));
    if dir.ends_with("deps") {
        dir.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.to_path_buf())
    } else {
        dir.to_path_buf()
    }
}

/// A binary of the workspace, built on demand when a single crate's tests run alone.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    workspace_binaries(&[(package, name)]).remove(0)
}

/// Binaries of the workspace, building the missing ones in one cargo invocation (one
/// invocation keeps features unified, so nothing is compiled twice).
pub fn workspace_binaries(wanted: &[(&str, &str)]) -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = wanted
        .iter()
        .map(|(_, name)| target_dir().join(name))
        .collect();
    if paths.iter().all(|p| p.is_file()) {
        return paths;
    }
    let lock_path = target_dir().join(".workspace-binaries.build-lock");
    let lock = std::fs::File::create(&lock_path).expect("the file is created");
    lock.lock().expect("the lock is taken");
    if !paths.iter().all(|p| p.is_file()) {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.arg("build");
        for (package, name) in wanted {
            build.args(["-p", package, "--bin", name]);
        }
        if target_dir().ends_with("release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("cargo build: {e}"));
        assert!(status.success(), "building {wanted:?} failed");
    }
    paths
}

/// The scriptable test plugin.
pub fn test_plugin_binary() -> PathBuf {
    workspace_binary("creddy-testkit", "creddy-test-plugin")
}

/// An installed copy of a plugin binary.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The executable.
    pub binary: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
}

/// Installs `source` as plugin `name` under `plugin_dir`, as `creddy plugin install` lays it
/// out (an unsigned install, without the registry files).
pub fn install_as(source: &Path, plugin_dir: &Path, name: &str) -> Installed {
    let dir = plugin_dir.join(name);
    std::fs::create_dir_all(&dir).expect("the directory is made");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("the mode is set");
    let binary = dir.join(format!("creddy-{name}"));
    std::fs::copy(source, &binary).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
        .expect("the mode is set");
    let sha256 = sha256_file(&binary).expect("the file is hashed");
    let record = InstallRecord {
        name: name.to_owned(),
        version: "0.1.0".to_owned(),
        sha256: sha256.clone(),
        signed: false,
        signer: None,
        source: source.display().to_string(),
        installed_at: "2026-01-01T00:00:00Z".to_owned(),
    };
    InstalledPlugin::write_record(&dir, &record).expect("the install record is written");
    Installed { binary, sha256 }
}

/// Writes the test plugin's behaviour script for its next calls.
pub fn script(state_dir: &Path, behavior: serde_json::Value) {
    std::fs::create_dir_all(state_dir).expect("the directory is made");
    std::fs::write(state_dir.join("behavior.json"), behavior.to_string())
        .expect("the file is written");
}

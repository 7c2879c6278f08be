//! What a build of creddy carries and trusts with no setting (§9.6, §17): the release public
//! key built into the binary, and the bundled registry beside it.
//!
//! The bundled registry is `<exe dir>/../lib/creddy/registry` in a release archive, verified
//! with the built-in key only; else `<exe dir>/registry`, which `cargo xtask registry` writes
//! into a workspace build (`target/<profile>/registry`), signed with the workspace's own key
//! whose public half it holds (`workspace-key.pub`). That key is trusted only in the workspace
//! layout, where it is exactly as trusted as the binary beside it: whoever can write
//! `<exe dir>` can replace `creddy` itself. A key placed into a release's registry is ignored.

use std::path::{Path, PathBuf};

use creddy_plugin::registry::WORKSPACE_KEY_FILE;

/// The release public key built into this binary (build input `CREDDY_RELEASE_PUBKEY`).
const RELEASE_KEY: Option<&str> = option_env!("CREDDY_RELEASE_PUBKEY");

/// A registry bundled beside the binary.
#[derive(Debug, Clone)]
pub struct Bundled {
    /// Its directory.
    pub dir: PathBuf,
    /// The key of a workspace registry (never set for a release's).
    pub workspace_key: Option<String>,
}

/// The release key built into the binary, if the build was given one.
pub fn release_key() -> Option<&'static str> {
    RELEASE_KEY.map(str::trim).filter(|k| !k.is_empty())
}

/// The registry bundled beside the running binary, when a release or a build placed one.
pub fn bundled_registry() -> Option<Bundled> {
    let exe = std::env::current_exe().ok()?;
    bundled_beside(exe.parent()?)
}

/// The bundled registry for a binary in `exe_dir`.
fn bundled_beside(exe_dir: &Path) -> Option<Bundled> {
    let has_index = |dir: &Path| dir.join("index.json").is_file();
    if let Some(release) = exe_dir.parent().map(|p| p.join("lib/creddy/registry"))
        && has_index(&release)
    {
        return Some(Bundled {
            dir: release,
            workspace_key: None,
        });
    }
    let workspace = exe_dir.join("registry");
    has_index(&workspace).then(|| Bundled {
        workspace_key: std::fs::read_to_string(workspace.join(WORKSPACE_KEY_FILE))
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty()),
        dir: workspace,
    })
}

/// The keys trusted with no setting: the built-in release key and a workspace registry's key.
pub fn builtin_keys() -> Vec<String> {
    release_key()
        .map(str::to_owned)
        .into_iter()
        .chain(bundled_registry().and_then(|b| b.workspace_key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("index.json"), "{}").expect("index");
    }

    #[test]
    fn a_release_layout_wins_and_its_registry_never_brings_a_key() {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        assert!(bundled_beside(&bin).is_none());

        index(&bin.join("registry"));
        std::fs::write(bin.join("registry").join(WORKSPACE_KEY_FILE), "RWkey\n").expect("key");
        let workspace = bundled_beside(&bin).expect("workspace registry");
        assert_eq!(workspace.dir, bin.join("registry"));
        assert_eq!(workspace.workspace_key.as_deref(), Some("RWkey"));

        let release = root.path().join("lib/creddy/registry");
        index(&release);
        std::fs::write(release.join(WORKSPACE_KEY_FILE), "RWplanted\n").expect("key");
        let found = bundled_beside(&bin).expect("release registry");
        assert_eq!(found.dir, release);
        assert_eq!(
            found.workspace_key, None,
            "a release registry is verified with the built-in key only"
        );
    }
}

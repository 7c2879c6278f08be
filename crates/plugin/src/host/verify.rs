//! The integrity check run before every start of a plugin binary: not a symlink, not
//! writable by group or others (nor its directory), and its SHA-256 equal to the one
//! recorded when it was installed.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Why a binary was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct IntegrityError {
    /// The path checked.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

fn refuse(path: &Path, problem: impl Into<String>) -> IntegrityError {
    IntegrityError {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks `binary` and its directory, then its hash against `expected_sha256`.
pub fn verify_binary(binary: &Path, expected_sha256: &str) -> Result<(), IntegrityError> {
    let dir = binary.parent().unwrap_or(Path::new("/"));
    for (path, what) in [(dir, "plugin directory"), (binary, "plugin binary")] {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| refuse(path, format!("cannot read the {what}: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(refuse(
                path,
                format!("the {what} is a symlink, which creddy refuses to run"),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(refuse(
                path,
                format!(
                    "the {what} is writable by group or others (mode {mode:o}); run: chmod go-w {}",
                    path.display()
                ),
            ));
        }
    }
    let actual = sha256_file(binary)
        .map_err(|e| refuse(binary, format!("cannot read the plugin binary: {e}")))?;
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(refuse(
            binary,
            format!(
                "SHA-256 {actual} does not match the installed {expected_sha256}; the binary was modified after installation (reinstall the plugin)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin_dir = dir.path().join("p");
        std::fs::create_dir(&plugin_dir).expect("mkdir");
        std::fs::set_permissions(&plugin_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let bin = plugin_dir.join("creddy-x");
        std::fs::write(&bin, b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let hash = sha256_file(&bin).expect("hash");
        (dir, bin, hash)
    }

    #[test]
    fn an_untouched_binary_passes_and_a_modified_one_is_refused() {
        let (_dir, bin, hash) = setup();
        assert_eq!(verify_binary(&bin, &hash), Ok(()));
        std::fs::write(&bin, b"#!/bin/sh\necho evil\n").expect("write");
        let err = verify_binary(&bin, &hash)
            .expect_err("tampered")
            .to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn writable_files_and_symlinks_are_refused() {
        let (dir, bin, hash) = setup();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(
            verify_binary(&bin, &hash)
                .expect_err("writable")
                .problem
                .contains("writable")
        );
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = dir.path().join("p/creddy-link");
        std::os::unix::fs::symlink(&bin, &link).expect("symlink");
        assert!(
            verify_binary(&link, &hash)
                .expect_err("symlink")
                .problem
                .contains("symlink")
        );
    }
}

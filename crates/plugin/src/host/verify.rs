//! The integrity check run before every start of a plugin binary: not a symlink, not
//! writable by group or others (nor its directory), and its SHA-256 equal to the one
//! recorded when it was installed (for a signed installation, the one its signed manifest
//! lists, checked by the caller).
//!
//! **What runs is exactly what was hashed.** [`load_verified`] reads the binary once, hashes
//! those bytes and copies them into a sealed memory file ([`VerifiedImage`]) that is executed
//! through `/proc/self/fd`: someone who can write to the plugin directory cannot swap the file
//! between the check and the exec.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// The largest plugin binary creddy runs.
pub const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;

/// Checks that `binary` and its directory are no symlinks and not writable by group or
/// others.
fn check_placement(binary: &Path) -> Result<(), IntegrityError> {
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
    Ok(())
}

fn check_hash(binary: &Path, actual: &str, expected_sha256: &str) -> Result<(), IntegrityError> {
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

/// Checks `binary` and its directory, then its hash against `expected_sha256`.
pub fn verify_binary(binary: &Path, expected_sha256: &str) -> Result<(), IntegrityError> {
    check_placement(binary)?;
    let actual = sha256_file(binary)
        .map_err(|e| refuse(binary, format!("cannot read the plugin binary: {e}")))?;
    check_hash(binary, &actual, expected_sha256)
}

/// A verified plugin binary held in a sealed memory file, ready to be executed.
#[derive(Debug)]
pub struct VerifiedImage {
    memory: OwnedFd,
}

impl VerifiedImage {
    /// The path that executes the verified bytes (valid in this process, and in a child that
    /// inherits the descriptor: it is left inheritable so that interpreters of `#!` plugins
    /// can read it too; it is read-only and holds only the plugin's own image).
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.memory.as_raw_fd()))
    }
}

/// Checks `binary` like [`verify_binary`] and returns the very bytes that were hashed, sealed
/// against any change, to execute instead of the file.
pub fn load_verified(
    binary: &Path,
    expected_sha256: &str,
) -> Result<VerifiedImage, IntegrityError> {
    use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
    check_placement(binary)?;
    let unreadable =
        |e: std::io::Error| refuse(binary, format!("cannot read the plugin binary: {e}"));
    let file = rustix::fs::open(
        binary,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unreadable(e.into()))?;
    let mut bytes = Vec::new();
    std::fs::File::from(file)
        .take(MAX_BINARY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_BINARY_BYTES {
        return Err(refuse(
            binary,
            format!(
                "the plugin binary is larger than {} MiB",
                MAX_BINARY_BYTES >> 20
            ),
        ));
    }
    check_hash(
        binary,
        &hex::encode(Sha256::digest(&bytes)),
        expected_sha256,
    )?;
    let sealing = |e: rustix::io::Errno| {
        refuse(
            binary,
            format!("cannot seal the verified binary in memory: {e}"),
        )
    };
    // Written through a close-on-exec descriptor, sealed, then reopened read-only, so that at
    // exec no process holds the image open for writing (which makes the exec fail with "text
    // file busy"). A child another thread forks meanwhile holds the writable copy until its
    // own exec; the spawn tries again past that instant (`connection::spawn_past_busy_images`).
    let writable = rustix::fs::memfd_create(
        "creddy-plugin",
        MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC,
    )
    .map_err(sealing)?;
    let mut writer = std::fs::File::from(writable);
    writer
        .write_all(&bytes)
        .map_err(|e| refuse(binary, format!("cannot copy the verified binary: {e}")))?;
    let writable = OwnedFd::from(writer);
    // `FUTURE_WRITE` refuses every later write through any descriptor, as `WRITE` does, but
    // does not wait for the pages' transient references to go: `WRITE` answered EBUSY on a
    // loaded machine (a page still held by another CPU's batch), failing plugin starts.
    rustix::fs::fcntl_add_seals(
        &writable,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL,
    )
    .map_err(sealing)?;
    let memory = rustix::fs::open(
        format!("/proc/self/fd/{}", writable.as_raw_fd()),
        OFlags::RDONLY,
        Mode::empty(),
    )
    .map_err(sealing)?;
    drop(writable);
    Ok(VerifiedImage { memory })
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
    fn the_verified_image_holds_the_hashed_bytes_whatever_happens_to_the_file() {
        let (_dir, bin, hash) = setup();
        let image = load_verified(&bin, &hash).expect("verified");
        std::fs::write(&bin, b"#!/bin/sh\necho evil\n").expect("swap after the check");
        assert_eq!(
            std::fs::read(image.exec_path()).expect("read image"),
            b"#!/bin/sh\n",
            "the image is what was hashed"
        );
        assert!(
            std::fs::OpenOptions::new()
                .write(true)
                .open(image.exec_path())
                .and_then(|mut f| f.write_all(b"x"))
                .is_err(),
            "the image is sealed"
        );
        assert!(
            load_verified(&bin, &hash).is_err(),
            "the swapped file is refused"
        );
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

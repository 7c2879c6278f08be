//! The data directory: its permissions, the lock that keeps a second server out, and the
//! local admin token.
//!
//! The directory is created 0700 and every file in it 0600; the server refuses to start when
//! the directory or a file in it is accessible by group or others or owned by another user,
//! because the admin token and the database live there.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use creddy_core::secret::{SecretToken, TokenKind};

/// The lock file's name.
pub const LOCK_FILE: &str = "creddy.lock";
/// The admin token file's name.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The master key's name.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The SQLite database's name.
pub const DATABASE_FILE: &str = "creddy.db";

/// A problem with the data directory; the server exits 2 with this message.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A path has the wrong owner or mode.
    #[error("{path} is {problem}; {remedy}")]
    Unsafe {
        /// The offending path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        remedy: String,
    },
    /// Another server holds the lock.
    #[error(
        "another creddy server is using the data directory {0} (its creddy.lock is held); stop that server or pass another --data-dir"
    )]
    Locked(PathBuf),
    /// The admin token file exists but holds no valid token.
    #[error(
        "{0} does not hold a valid admin token (cka_ followed by 48 hex digits); delete it and restart to issue a new one"
    )]
    MalformedToken(PathBuf),
    /// Any other IO failure.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An opened, checked and locked data directory; the lock lasts as long as this value.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed (0700), checks its owner and mode and those of the
    /// files creddy keeps there, and takes the lock.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        if !path.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_error(path))?;
        }
        check_private(path, true)?;
        for name in [
            LOCK_FILE,
            ADMIN_TOKEN_FILE,
            DATABASE_FILE,
            "creddy.db-wal",
            "creddy.db-shm",
        ] {
            let file = path.join(name);
            if file.exists() {
                check_private(&file, false)?;
            }
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = private_file(&lock_path, false)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(DataDirError::Locked(path.to_owned())),
            Err(TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite database path, created empty with mode 0600 if missing so that SQLite and
    /// its WAL files inherit private permissions.
    pub fn database(&self) -> Result<PathBuf, DataDirError> {
        let path = self.path.join(DATABASE_FILE);
        private_file(&path, false)?;
        Ok(path)
    }

    /// The path of the admin token file.
    pub fn admin_token_path(&self) -> PathBuf {
        self.path.join(ADMIN_TOKEN_FILE)
    }

    /// Reads the admin token file, if there is one.
    pub fn read_admin_token(&self) -> Result<Option<SecretToken>, DataDirError> {
        let path = self.admin_token_path();
        match fs::read_to_string(&path) {
            Ok(text) => SecretToken::parse(TokenKind::Admin, text.trim())
                .map(Some)
                .ok_or(DataDirError::MalformedToken(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Writes the admin token file atomically with mode 0600.
    pub fn write_admin_token(&self, token: &SecretToken) -> Result<(), DataDirError> {
        let path = self.admin_token_path();
        let temp = self.path.join(".admin.token.tmp");
        let _ = fs::remove_file(&temp);
        let mut file = private_file(&temp, true)?;
        file.write_all(format!("{}\n", token.expose()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error(&temp))?;
        fs::rename(&temp, &path).map_err(io_error(&path))
    }
}

/// Opens (creating if needed) a file with mode 0600.
fn private_file(path: &Path, truncate: bool) -> Result<File, DataDirError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

/// Refuses a path that is group- or world-accessible or owned by someone else.
fn check_private(path: &Path, is_dir: bool) -> Result<(), DataDirError> {
    let meta = fs::symlink_metadata(path).map_err(io_error(path))?;
    check_owner_and_mode(path, &meta, is_dir)
}

/// Refuses a file that is, or whose link target is, group- or world-accessible or owned by
/// someone else (the master key may live outside the data directory, behind a link).
pub(crate) fn check_private_target(path: &Path) -> Result<(), DataDirError> {
    let meta = fs::metadata(path).map_err(io_error(path))?;
    check_owner_and_mode(path, &meta, false)
}

fn check_owner_and_mode(
    path: &Path,
    meta: &fs::Metadata,
    is_dir: bool,
) -> Result<(), DataDirError> {
    let mode = meta.permissions().mode() & 0o777;
    let wanted = if is_dir { "700" } else { "600" };
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(DataDirError::Unsafe {
            path: path.to_owned(),
            problem: format!(
                "owned by uid {} but the server runs as uid {me}",
                meta.uid()
            ),
            remedy: format!("run the server as its owner or chown it to uid {me}"),
        });
    }
    if mode & 0o077 != 0 {
        return Err(DataDirError::Unsafe {
            path: path.to_owned(),
            problem: format!("accessible by group or others (mode {mode:o})"),
            remedy: format!("run: chmod {wanted} {}", path.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn creates_a_private_directory_and_token_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("nested/data");
        let data = DataDir::open(&dir).expect("open");
        assert_eq!(mode(&dir), 0o700);
        assert!(data.read_admin_token().expect("read").is_none());
        let token = SecretToken::generate(TokenKind::Admin);
        data.write_admin_token(&token).expect("write");
        assert_eq!(mode(&data.admin_token_path()), 0o600);
        let read = data.read_admin_token().expect("read");
        assert_eq!(read.as_ref().map(SecretToken::expose), Some(token.expose()));
        assert_eq!(mode(&data.database().expect("db")), 0o600);
    }

    #[test]
    fn a_second_opener_is_locked_out_until_the_first_closes() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        let first = DataDir::open(&dir).expect("open");
        let err = DataDir::open(&dir).expect_err("locked").to_string();
        assert!(err.contains("another creddy server"), "{err}");
        drop(first);
        assert!(DataDir::open(&dir).is_ok());
    }

    #[test]
    fn loose_permissions_are_refused_with_the_fix() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = DataDir::open(root.path()).expect_err("unsafe").to_string();
        assert!(
            err.contains("mode 755") && err.contains("chmod 700"),
            "{err}"
        );
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let token = root.path().join(ADMIN_TOKEN_FILE);
        fs::write(&token, "x").expect("write");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = DataDir::open(root.path()).expect_err("unsafe").to_string();
        assert!(
            err.contains("admin.token") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_token_file_is_reported_not_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(&root.path().join("data")).expect("open");
        fs::write(data.admin_token_path(), "not-a-token\n").expect("write");
        let err = data.read_admin_token().expect_err("malformed").to_string();
        assert!(err.contains("delete it and restart"), "{err}");
        assert_eq!(
            fs::read_to_string(data.admin_token_path()).expect("read"),
            "not-a-token\n"
        );
    }
}

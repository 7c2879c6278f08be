//! Secrets at rest: backend configurations (and later signing keys and revocation handles)
//! are sealed with XChaCha20-Poly1305 under the node's master key.
//!
//! The key is 32 random bytes, base64, in `<data dir>/master.key` (0600, created on first
//! start) or the file named by `secrets.key_file`. A sealed value is
//! `v1:<key id>:<base64(nonce ‖ ciphertext)>` with a fresh random 24-byte nonce each time;
//! the key id (the first 8 hex digits of the key's SHA-256) lets the key rotate later. Each
//! value is bound to a context string (for example `backend-config:daytona`) as associated
//! data, so a sealed value cannot be moved to another row. Every node sharing a database must
//! share the key: a check value sealed by the first node is opened by every node at start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use creddy_core::secret::Secret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The context of the key check value.
const KEY_CHECK_CONTEXT: &str = "key-check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"creddy master key check";

/// Why a key or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file is unusable.
    #[error("{path}: {problem}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The key file is readable by others or owned by another user (the message names the
    /// path and the fix).
    #[error("{0}")]
    Unsafe(String),
    /// A sealed value does not open with this key in this context.
    #[error("a stored secret cannot be decrypted: {0}")]
    Open(&'static str),
}

/// The master key, held in zeroized memory: its cipher (whose `Debug` shows nothing of it),
/// its public id, and the keys derived from it (`Secret`s).
#[derive(Debug)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    key_id: String,
    audit_key: Secret<[u8; 32]>,
    client_secret_key: Secret<[u8; 32]>,
}

impl Sealer {
    /// Loads the key from `path`, creating it (0600) when `create` is true and it is missing.
    pub fn load(path: &Path, create: bool) -> Result<Self, SealError> {
        let fail = |problem: String| SealError::KeyFile {
            path: path.to_owned(),
            problem,
        };
        if !path.exists() {
            if !create {
                return Err(fail("the key file does not exist; copy master.key from another node or fix secrets.key_file".into()));
            }
            let mut key = Zeroizing::new([0u8; 32]);
            creddy_core::secret::fill_random(key.as_mut());
            let text = Zeroizing::new(format!("{}\n", STANDARD.encode(key.as_ref())));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail(e.to_string()))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
        }
        // Anyone else who can read the key can open every sealed secret.
        crate::data_dir::check_private_target(path)
            .map_err(|e| SealError::Unsafe(e.to_string()))?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| fail("the key file does not hold base64".into()))?,
        );
        if bytes.len() != 32 {
            return Err(fail(format!(
                "the key must be 32 bytes, found {}",
                bytes.len()
            )));
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(key: &[u8]) -> Self {
        let key_id = hex::encode(&Sha256::digest(key)[..4]);
        let cipher =
            XChaCha20Poly1305::new_from_slice(key).unwrap_or_else(|_| unreachable!("32-byte key"));
        let audit_key = Secret::new(creddy_core::secret::hmac_sha256(
            key,
            b"creddy audit keyed hash v1",
        ));
        let client_secret_key = Secret::new(creddy_core::secret::hmac_sha256(
            key,
            b"creddy client secret hash v1",
        ));
        Self {
            cipher,
            key_id,
            audit_key,
            client_secret_key,
        }
    }

    /// How an OIDC client secret is stored: HMAC-SHA-256 under a key derived from the master
    /// key (a stolen database alone does not allow checking guesses; no password KDF runs at
    /// the token endpoint, the secrets being 192-bit random).
    pub fn client_secret_hash(
        &self,
        secret: &creddy_core::secret::SecretToken,
    ) -> creddy_core::secret::TokenHash {
        creddy_core::secret::TokenHash::from_stored(hex::encode(creddy_core::secret::hmac_sha256(
            self.client_secret_key.expose(),
            secret.expose().as_bytes(),
        )))
    }

    /// The key of the audit records' keyed hashes, derived from the master key.
    pub fn audit_key(&self) -> [u8; 32] {
        *self.audit_key.expose()
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plaintext` for `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce_bytes = [0u8; 24];
        creddy_core::secret::fill_random(&mut nonce_bytes);
        let nonce = XNonce::from(nonce_bytes);
        let aad = self.aad(context);
        // Encryption with a valid key and nonce cannot fail.
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut blob = nonce_bytes.to_vec();
        blob.extend_from_slice(&sealed);
        format!("v1:{}:{}", self.key_id, STANDARD.encode(blob))
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Open("unknown format"));
        };
        if key_id != self.key_id {
            return Err(SealError::Open("it was sealed with another master key"));
        }
        let blob = STANDARD
            .decode(body)
            .map_err(|_| SealError::Open("corrupt encoding"))?;
        if blob.len() < 24 {
            return Err(SealError::Open("too short"));
        }
        let (nonce, ciphertext) = blob.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Open("bad nonce"))?;
        let aad = self.aad(context);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open("authentication failed (tampered, or another context)"))
    }

    fn aad(&self, context: &str) -> Vec<u8> {
        format!("creddy:v1:{}:{context}", self.key_id).into_bytes()
    }

    /// A value that proves, to every node sharing the store, which key sealed the data.
    pub fn key_check(&self) -> String {
        self.seal(KEY_CHECK_CONTEXT, KEY_CHECK_PLAINTEXT)
    }

    /// Whether `stored` is a key check value sealed with this key.
    pub fn matches_key_check(&self, stored: &str) -> bool {
        self.open(KEY_CHECK_CONTEXT, stored)
            .is_ok_and(|p| p.as_slice() == KEY_CHECK_PLAINTEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sealer_prints_its_key_id_and_nothing_of_its_keys() {
        let sealer = Sealer::from_bytes(&[0xA7; 32]);
        let printed = format!("{sealer:?}");
        assert!(printed.contains(sealer.key_id()), "{printed}");
        let audit = sealer.audit_key();
        for leak in [
            "167".to_owned(),
            hex::encode(audit),
            format!("{}, {}, {}", audit[0], audit[1], audit[2]),
        ] {
            assert!(!printed.contains(&leak), "{leak} shows in {printed}");
        }
    }

    #[test]
    fn a_created_key_is_private_and_seals_values_that_open_only_in_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        let sealer = Sealer::load(&path, true).expect("create");
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let sealed = sealer.seal("backend-config:a", b"api_key=secret");
        assert!(sealed.starts_with(&format!("v1:{}:", sealer.key_id())));
        assert!(!sealed.contains("secret"));
        assert_ne!(
            sealed,
            sealer.seal("backend-config:a", b"api_key=secret"),
            "fresh nonce"
        );
        assert_eq!(
            sealer
                .open("backend-config:a", &sealed)
                .expect("open")
                .as_slice(),
            b"api_key=secret"
        );
        assert!(
            sealer.open("backend-config:b", &sealed).is_err(),
            "bound to its context"
        );
        let reloaded = Sealer::load(&path, false).expect("reload");
        assert!(reloaded.matches_key_check(&sealer.key_check()));
    }

    #[test]
    fn another_key_or_a_tampered_value_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Sealer::load(&dir.path().join("a.key"), true).expect("a");
        let b = Sealer::load(&dir.path().join("b.key"), true).expect("b");
        let sealed = a.seal("ctx", b"x");
        assert!(b.open("ctx", &sealed).is_err());
        assert!(!b.matches_key_check(&a.key_check()));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(a.open("ctx", &tampered).is_err());
        let missing = Sealer::load(&dir.path().join("none.key"), false)
            .expect_err("missing")
            .to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        std::fs::write(dir.path().join("short.key"), "c2hvcnQ=\n").expect("write");
        assert!(Sealer::load(&dir.path().join("short.key"), false).is_err());
    }
}

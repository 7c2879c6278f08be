//! The signing side of registries (feature `publish`): a minisign-compatible secret key and a
//! registry writer, used by the release build (`cargo xtask dist`, `cargo xtask registry`)
//! and by tests. creddy itself only verifies ([`crate::signing`]).
//!
//! Keys are minisign secret key files as `minisign -G -W` writes them (not encrypted with a
//! password); signatures are legacy Ed25519 minisign signatures (`Ed`) over the file, with a
//! global signature over the trusted comment, which `minisign -V` and creddy both verify.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

use crate::registry::{Binary, Index, IndexEntry, Manifest, current_platform};
use crate::version::Version;

/// Bytes of a decoded minisign secret key: algorithm, KDF, checksum algorithm (2 each), salt
/// (32), KDF limits (8 + 8), key id (8), secret key (64: seed and public key), checksum (32).
const SECRET_KEY_LEN: usize = 158;
const KEYNUM_OFFSET: usize = 54;

/// A minisign signing key (`Debug` shows its public half only, as ed25519-dalek prints it).
#[derive(Debug)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    id: [u8; 8],
}

/// Why a secret key file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a minisign secret key.
    #[error("not a minisign secret key (expected the two lines `minisign -G -W` writes)")]
    Malformed,
    /// A password-protected key.
    #[error(
        "the key is encrypted with a password, which creddy's tools cannot read; create an unencrypted key with `minisign -G -W` and keep it offline"
    )]
    Encrypted,
    /// The secret and public halves disagree.
    #[error("the key is damaged: its public half does not belong to its secret half")]
    Inconsistent,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        creddy_core::secret::fill_random(&mut seed);
        let mut id = [0u8; 8];
        creddy_core::secret::fill_random(&mut id);
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
            id,
        }
    }

    /// Reads an unencrypted minisign secret key file.
    pub fn from_minisign(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or(KeyError::Malformed)?;
        let raw = STANDARD.decode(line).map_err(|_| KeyError::Malformed)?;
        if raw.len() != SECRET_KEY_LEN || &raw[..2] != b"Ed" || &raw[4..6] != b"B2" {
            return Err(KeyError::Malformed);
        }
        if raw[2..4] != [0, 0] {
            return Err(KeyError::Encrypted);
        }
        let keynum = &raw[KEYNUM_OFFSET..KEYNUM_OFFSET + 72];
        let id: [u8; 8] = keynum[..8].try_into().map_err(|_| KeyError::Malformed)?;
        let seed: [u8; 32] = keynum[8..40].try_into().map_err(|_| KeyError::Malformed)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &keynum[40..72] {
            return Err(KeyError::Inconsistent);
        }
        Ok(Self { key, id })
    }

    /// The key as an unencrypted minisign secret key file (secret: keep it out of any
    /// repository).
    pub fn to_minisign(&self) -> String {
        let mut raw = Vec::with_capacity(SECRET_KEY_LEN);
        raw.extend_from_slice(b"Ed");
        raw.extend_from_slice(&[0, 0]);
        raw.extend_from_slice(b"B2");
        raw.resize(KEYNUM_OFFSET, 0);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&self.key.to_bytes());
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        raw.resize(SECRET_KEY_LEN, 0);
        format!(
            "untrusted comment: minisign encrypted secret key\n{}\n",
            STANDARD.encode(raw)
        )
    }

    /// The key id as minisign shows it.
    pub fn key_id(&self) -> String {
        format!("{:016X}", u64::from_le_bytes(self.id))
    }

    /// The minisign public key line (`RW…`).
    pub fn public_key(&self) -> String {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        STANDARD.encode(raw)
    }

    /// The public key as a `.pub` file.
    pub fn public_key_file(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.key_id(),
            self.public_key()
        )
    }

    /// A minisign signature file over `data`.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let signature = self.key.sign(data).to_bytes();
        let mut line = b"Ed".to_vec();
        line.extend_from_slice(&self.id);
        line.extend_from_slice(&signature);
        let mut global = signature.to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_signature = self.key.sign(&global).to_bytes();
        format!(
            "untrusted comment: signature from creddy key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            self.key_id(),
            STANDARD.encode(line),
            STANDARD.encode(global_signature)
        )
    }

    /// Signs `data` with the trusted comment minisign writes (`timestamp:… file:…`).
    pub fn sign_file(&self, data: &[u8], file_name: &str, timestamp: u64) -> String {
        self.sign(data, &format!("timestamp:{timestamp}\tfile:{file_name}"))
    }
}

/// One plugin release to publish.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The plugin's name.
    pub name: &'a str,
    /// The release's version.
    pub version: &'a str,
    /// One line for people.
    pub description: &'a str,
    /// The executable to publish.
    pub binary: &'a Path,
    /// The oldest creddy that may run it.
    pub min_creddy_version: &'a str,
}

/// When, and by which key, a registry is signed.
#[derive(Debug)]
pub struct Signer<'a> {
    /// The key.
    pub key: &'a SigningKey,
    /// Seconds since the epoch, for the manifests' `released_at` and the signatures.
    pub timestamp: u64,
}

impl Signer<'_> {
    /// Writes `bytes` to `path` and its minisign signature to `<path>.minisig` (the trusted
    /// comment names the file, as minisign's does).
    pub fn write_signed(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        write(path, bytes)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let signature = self.key.sign_file(bytes, &name, self.timestamp);
        let mut signature_path = path.as_os_str().to_owned();
        signature_path.push(".minisig");
        write(Path::new(&signature_path), signature.as_bytes())
    }
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// `seconds` since the epoch as RFC 3339 UTC.
fn rfc3339(seconds: u64) -> String {
    i64::try_from(seconds.saturating_mul(1000))
        .map(creddy_core::Timestamp::from_millis)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// Writes (or adds to) a registry in `out` for this machine's platform, signing the index
/// and every manifest.
pub fn publish(out: &Path, signer: &Signer<'_>, releases: &[Publish<'_>]) -> std::io::Result<()> {
    let index_path = out.join("index.json");
    let mut index = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
        .unwrap_or(Index {
            schema: 1,
            plugins: BTreeMap::new(),
        });
    for release in releases {
        publish_release(out, signer, release)?;
        add_to_index(&mut index, release);
    }
    let index_bytes = serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?;
    signer.write_signed(&index_path, &index_bytes)
}

/// The release's directory: its binary, manifest and signature.
fn publish_release(out: &Path, signer: &Signer<'_>, release: &Publish<'_>) -> std::io::Result<()> {
    let (os, arch) = current_platform();
    let bytes = std::fs::read(release.binary)?;
    let filename = format!("creddy-{}-{os}-{arch}", release.name);
    let dir = out.join(release.name).join(release.version);
    write(&dir.join(&filename), &bytes)?;
    let manifest = Manifest {
        schema: 1,
        name: release.name.to_owned(),
        version: release.version.to_owned(),
        description: release.description.to_owned(),
        protocol_version: 1,
        min_creddy_version: release.min_creddy_version.to_owned(),
        released_at: rfc3339(signer.timestamp),
        binaries: vec![Binary {
            os: os.to_owned(),
            arch: arch.to_owned(),
            filename,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            url: None,
        }],
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    signer.write_signed(&dir.join("manifest.json"), &manifest_bytes)
}

fn add_to_index(index: &mut Index, release: &Publish<'_>) {
    let entry = index
        .plugins
        .entry(release.name.to_owned())
        .or_insert_with(|| IndexEntry {
            description: release.description.to_owned(),
            latest: release.version.to_owned(),
            versions: vec![],
        });
    if !entry.versions.iter().any(|v| v == release.version) {
        entry.versions.push(release.version.to_owned());
    }
    let newest = entry
        .versions
        .iter()
        .filter_map(|v| Version::parse(v).map(|p| (p, v.clone())))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v);
    entry.latest = newest.unwrap_or_else(|| release.version.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{SignatureError, TrustedKey, verify};

    #[test]
    fn signatures_verify_with_the_key_and_fail_otherwise() {
        let key = SigningKey::generate();
        let trusted = TrustedKey::parse(&key.public_key()).expect("public key");
        assert_eq!(trusted.id(), key.key_id());
        let signature = key.sign(b"index", "timestamp:1\tfile:index.json");
        assert_eq!(
            verify(
                std::slice::from_ref(&trusted),
                b"index",
                &signature,
                "index.json"
            ),
            Ok(trusted.id().to_owned())
        );
        assert!(matches!(
            verify(
                std::slice::from_ref(&trusted),
                b"indeX",
                &signature,
                "index.json"
            ),
            Err(SignatureError::Mismatch(_))
        ));
        let other = TrustedKey::parse(&SigningKey::generate().public_key()).expect("other");
        assert!(matches!(
            verify(&[other], b"index", &signature, "index.json"),
            Err(SignatureError::UntrustedKey { .. })
        ));
        let tampered_comment = signature.replace("file:index.json", "file:evil.json");
        assert!(
            verify(
                std::slice::from_ref(&trusted),
                b"index",
                &tampered_comment,
                "index.json"
            )
            .is_err(),
            "the trusted comment is signed too"
        );
        assert!(TrustedKey::parse("not a key").is_err());
    }

    #[test]
    fn secret_key_files_round_trip_and_damage_is_named() {
        let key = SigningKey::generate();
        let text = key.to_minisign();
        let restored = SigningKey::from_minisign(&text).expect("restore");
        assert_eq!(restored.public_key(), key.public_key());
        let line = text.lines().nth(1).unwrap_or_default();
        let mut raw = STANDARD.decode(line).unwrap_or_default();
        raw[2..4].copy_from_slice(b"Sc");
        let encrypted = format!("untrusted comment: c\n{}\n", STANDARD.encode(&raw));
        assert_eq!(
            SigningKey::from_minisign(&encrypted).err(),
            Some(KeyError::Encrypted)
        );
        raw[2..4].copy_from_slice(&[0, 0]);
        raw[KEYNUM_OFFSET + 50] ^= 1;
        let damaged = format!("untrusted comment: c\n{}\n", STANDARD.encode(&raw));
        assert_eq!(
            SigningKey::from_minisign(&damaged).err(),
            Some(KeyError::Inconsistent)
        );
        assert_eq!(
            SigningKey::from_minisign("untrusted comment: x\nRWQ=\n").err(),
            Some(KeyError::Malformed)
        );
    }
}

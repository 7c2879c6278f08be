//! Minisign-compatible signatures (Ed25519, legacy or prehashed) over registry files.
//!
//! A trusted key is a minisign public key (`RW…` base64, optionally after an
//! `untrusted comment:` line). A signature must verify with one of the trusted keys, and its
//! global signature over the trusted comment must verify too.

use minisign_verify::{PublicKey, Signature};

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A configured key cannot be read.
    #[error("invalid trusted key '{0}': not a minisign public key")]
    BadKey(String),
    /// The signature file cannot be read.
    #[error("the signature of {0} is malformed")]
    Malformed(String),
    /// No trusted key made the signature.
    #[error(
        "the signature of {what} was made by key {key_id}, which is not trusted (add it to plugins.trusted_keys or CREDDY_PLUGIN_TRUSTED_KEYS if you trust it)"
    )]
    UntrustedKey {
        /// The file.
        what: String,
        /// The signer's key id.
        key_id: String,
    },
    /// The signature does not match the content.
    #[error("the signature of {0} does not match its content: it was altered or corrupted")]
    Mismatch(String),
}

/// A trusted minisign public key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: PublicKey,
    id: String,
}

/// The key id as minisign shows it: 16 upper-case hex digits.
fn key_id_of(base64_key: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(base64_key.trim())
        .ok()?;
    let id: [u8; 8] = raw.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}

impl TrustedKey {
    /// Parses a minisign public key (the base64 line, or a whole `.pub` file).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or_default();
        let bad = || SignatureError::BadKey(line.chars().take(60).collect());
        let key = PublicKey::from_base64(line).map_err(|_| bad())?;
        let id = key_id_of(line).ok_or_else(bad)?;
        Ok(Self { key, id })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The key id in a signature file, for messages.
fn signature_key_id(signature: &str) -> String {
    signature
        .lines()
        .nth(1)
        .and_then(key_id_of)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Checks `signature` (a `.minisig` file's text) over `data` against the trusted keys;
/// returns the signer's key id. `what` names the file in messages.
pub fn verify(
    trusted: &[TrustedKey],
    data: &[u8],
    signature: &str,
    what: &str,
) -> Result<String, SignatureError> {
    let parsed =
        Signature::decode(signature).map_err(|_| SignatureError::Malformed(what.to_owned()))?;
    let signer = signature_key_id(signature);
    let key =
        trusted
            .iter()
            .find(|k| k.id == signer)
            .ok_or_else(|| SignatureError::UntrustedKey {
                what: what.to_owned(),
                key_id: signer.clone(),
            })?;
    key.key
        .verify(data, &parsed, true)
        .map_err(|_| SignatureError::Mismatch(what.to_owned()))?;
    Ok(signer)
}

//! Signing for the development registry: minisign-compatible (legacy Ed25519) signatures
//! made with a key the test or the demo generates, so plugins are installed exactly as users
//! install them, through signature and checksum checks.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};

/// A development signing key.
#[derive(Debug)]
pub struct DevKey {
    key: SigningKey,
    id: [u8; 8],
}

impl DevKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        creddy_core::secret::fill_random(&mut seed);
        let mut id = [0u8; 8];
        creddy_core::secret::fill_random(&mut id);
        Self {
            key: SigningKey::from_bytes(&seed),
            id,
        }
    }

    /// Restores a key saved with [`DevKey::to_text`].
    pub fn from_text(text: &str) -> Option<Self> {
        let raw = STANDARD.decode(text.trim()).ok()?;
        let seed: [u8; 32] = raw.get(..32)?.try_into().ok()?;
        let id: [u8; 8] = raw.get(32..40)?.try_into().ok()?;
        Some(Self {
            key: SigningKey::from_bytes(&seed),
            id,
        })
    }

    /// The key as text (secret; keep it out of the repository).
    pub fn to_text(&self) -> String {
        let mut raw = self.key.to_bytes().to_vec();
        raw.extend_from_slice(&self.id);
        STANDARD.encode(raw)
    }

    /// The minisign public key line (`RW…`).
    pub fn public_key(&self) -> String {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        STANDARD.encode(raw)
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
            "untrusted comment: signature from creddy development key\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            STANDARD.encode(line),
            STANDARD.encode(global_signature)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use creddy_plugin::signing::{SignatureError, TrustedKey, verify};

    #[test]
    fn signatures_verify_with_the_key_and_fail_otherwise() {
        let key = DevKey::generate();
        let trusted = TrustedKey::parse(&key.public_key()).expect("public key");
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
        let other = TrustedKey::parse(&DevKey::generate().public_key()).expect("other");
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
        let restored = DevKey::from_text(&key.to_text()).expect("restore");
        assert_eq!(restored.public_key(), key.public_key());
        assert!(TrustedKey::parse("not a key").is_err());
    }
}

//! The GitHub App's own credential: its RSA private key (PEM, as GitHub hands it out) and the
//! short JWT it signs to authenticate as the App (RS256, `iss` = the App id, `iat` 60 s in
//! the past against clock drift, `exp` 9 minutes ahead: GitHub accepts at most 10).
//!
//! Signing is ring's RSA PKCS#1 v1.5 with SHA-256 (constant-time, maintained). The key never
//! prints: [`AppKey`]'s `Debug` shows only its size.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

/// How far back `iat` is set.
const BACKDATE_SECONDS: i64 = 60;
/// How long an App JWT lives.
const LIFETIME_SECONDS: i64 = 540;
/// The largest PEM read.
const MAX_PEM_BYTES: usize = 16 * 1024;

/// The App's private key.
pub struct AppKey {
    pair: RsaKeyPair,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AppKey(RSA {} bits, redacted)",
            self.pair.public().modulus_len() * 8
        )
    }
}

impl AppKey {
    /// Reads a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub downloads) or
    /// PKCS#8 (`BEGIN PRIVATE KEY`). The error never quotes the key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if pem.len() > MAX_PEM_BYTES {
            return Err("private_key is longer than 16 KiB; give the App's PEM file".into());
        }
        let (label, der) = pem_body(pem).ok_or_else(|| {
            "private_key is not a PEM private key (-----BEGIN RSA PRIVATE KEY----- …); give the .pem file GitHub generated for the App".to_owned()
        })?;
        let pair = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            other => {
                return Err(format!(
                    "private_key is a PEM '{other}', not an RSA private key; give the .pem file GitHub generated for the App"
                ));
            }
        }
        .map_err(|e| format!("private_key is not a usable RSA key ({e}); give the .pem file GitHub generated for the App"))?;
        Ok(Self { pair })
    }

    /// An App JWT for `app_id` at `now` (seconds since the epoch).
    pub fn jwt(&self, app_id: &str, now: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": now - BACKDATE_SECONDS,
            "exp": now + LIFETIME_SECONDS,
            "iss": app_id,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        // Signing fails only on a modulus/buffer mismatch, which the buffer's size rules out.
        let rng = ring::rand::SystemRandom::new();
        if self
            .pair
            .sign(&RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut signature)
            .is_err()
        {
            signature.clear();
        }
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The label and DER bytes of the first PEM block.
fn pem_body(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let (label, rest) = rest.split_once("-----")?;
    let end_marker = format!("-----END {label}-----");
    let body = &rest[..rest.find(&end_marker)?];
    let text: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(text).ok()?;
    Some((label.to_owned(), der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_an_rsa_pem_is_refused_without_being_quoted() {
        for (pem, expected) in [
            ("ghp_not_a_key", "is not a PEM private key"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "a PEM 'CERTIFICATE'",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
                "not a usable RSA key",
            ),
        ] {
            let refused = AppKey::from_pem(pem).expect_err(pem);
            assert!(refused.contains(expected), "{refused}");
            assert!(
                !refused.contains("c2VjcmV0") && !refused.contains("ghp_"),
                "{refused}"
            );
        }
    }
}

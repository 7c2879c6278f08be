//! Secrets as types: bearer tokens and their hashes.
//!
//! A [`SecretToken`] redacts itself in `Debug` and `Display` and is zeroized on drop; its text
//! leaves only through [`SecretToken::expose`]. Tokens are stored only as their SHA-256
//! ([`TokenHash`]) and compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Fills `buf` from the operating system's secure random source.
///
/// There is no sensible way to continue without randomness, so a failure aborts the process
/// rather than handing out predictable tokens.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random source failed: {e}");
    }
}

/// The kinds of bearer secrets and their prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An agent's vend token, `ckr_`.
    Vend,
    /// The local admin token, `cka_`.
    Admin,
    /// An OIDC client secret, `cks_`.
    ClientSecret,
    /// An enrollment poll secret, `cke_`.
    EnrollmentSecret,
}

impl TokenKind {
    /// The token prefix.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Vend => "ckr_",
            TokenKind::Admin => "cka_",
            TokenKind::ClientSecret => "cks_",
            TokenKind::EnrollmentSecret => "cke_",
        }
    }

    /// The kind a presented token claims by its prefix.
    pub fn of(text: &str) -> Option<Self> {
        [
            TokenKind::Vend,
            TokenKind::Admin,
            TokenKind::ClientSecret,
            TokenKind::EnrollmentSecret,
        ]
        .into_iter()
        .find(|k| text.starts_with(k.prefix()))
    }
}

/// A bearer secret: prefix plus 48 hex characters (192 random bits).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretToken(String);

impl SecretToken {
    /// A new random token of the given kind.
    pub fn generate(kind: TokenKind) -> Self {
        let mut bytes = [0u8; 24];
        fill_random(&mut bytes);
        let token = format!("{}{}", kind.prefix(), hex::encode(bytes));
        bytes.zeroize();
        Self(token)
    }

    /// Wraps a token read from a file or a header, checking its shape so that garbage never
    /// reaches a hash lookup.
    pub fn parse(kind: TokenKind, text: &str) -> Option<Self> {
        let rest = text.strip_prefix(kind.prefix())?;
        (rest.len() == 48
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(text.to_owned()))
    }

    /// The secret text; every call site is a deliberate disclosure.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 under which the token is stored.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretToken({}********)", &self.0[..4.min(self.0.len())])
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// The SHA-256 of a secret, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash of `secret`.
    pub fn of(secret: &str) -> Self {
        Self(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    /// Wraps a hash read back from storage.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// HMAC-SHA-256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_prefix_and_48_hex() {
        let t = SecretToken::generate(TokenKind::Vend);
        assert!(t.expose().starts_with("ckr_"));
        assert_eq!(t.expose().len(), 52);
        assert_eq!(
            SecretToken::parse(TokenKind::Vend, t.expose()),
            Some(t.clone())
        );
        assert_ne!(SecretToken::generate(TokenKind::Vend), t);
        assert_eq!(TokenKind::of(t.expose()), Some(TokenKind::Vend));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert_eq!(SecretToken::parse(TokenKind::Vend, "ckr_abc"), None);
        assert_eq!(
            SecretToken::parse(TokenKind::Admin, &format!("ckr_{}", "a".repeat(48))),
            None
        );
        assert_eq!(
            SecretToken::parse(TokenKind::Admin, &format!("cka_{}", "A".repeat(48))),
            None
        );
    }

    #[test]
    fn secrets_never_print() {
        let t = SecretToken::generate(TokenKind::Admin);
        let secret_part = &t.expose()[4..];
        assert!(!format!("{t:?}").contains(secret_part));
        assert!(!format!("{t}").contains(secret_part));
    }

    #[test]
    fn hashes_compare_by_value() {
        let t = SecretToken::generate(TokenKind::Vend);
        assert!(t.hash().matches(&TokenHash::of(t.expose())));
        assert!(
            !t.hash()
                .matches(&SecretToken::generate(TokenKind::Vend).hash())
        );
        assert_eq!(t.hash().as_str().len(), 64);
    }
}

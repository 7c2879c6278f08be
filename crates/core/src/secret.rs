//! Secrets as types: any secret value, bearer tokens and their hashes.
//!
//! A [`Secret`] (a master credential, a plugin's configuration, a minted credential) and a
//! [`SecretToken`] redact themselves in `Debug` and `Display` and are wiped on drop; their
//! contents leave only through `expose`. Tokens are stored only as their SHA-256
//! ([`TokenHash`]) and compared in constant time (it has no `==`).

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

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
    /// A proxy-mode placeholder, `ckp_` (§20): it stands for a lease's credential on the
    /// proxy route and authenticates nothing else.
    ProxyPlaceholder,
}

impl TokenKind {
    /// The token prefix.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Vend => "ckr_",
            TokenKind::Admin => "cka_",
            TokenKind::ClientSecret => "cks_",
            TokenKind::EnrollmentSecret => "cke_",
            TokenKind::ProxyPlaceholder => "ckp_",
        }
    }

    /// The kind a presented token claims by its prefix.
    pub fn of(text: &str) -> Option<Self> {
        [
            TokenKind::Vend,
            TokenKind::Admin,
            TokenKind::ClientSecret,
            TokenKind::EnrollmentSecret,
            TokenKind::ProxyPlaceholder,
        ]
        .into_iter()
        .find(|k| text.starts_with(k.prefix()))
    }
}

/// A value that can be wiped in place before its memory is freed.
pub trait Wipe {
    /// Overwrites the secret parts with zeros.
    fn wipe(&mut self);
}

impl Wipe for String {
    fn wipe(&mut self) {
        self.zeroize();
    }
}

impl Wipe for [u8; 32] {
    fn wipe(&mut self) {
        self.zeroize();
    }
}

impl Wipe for Vec<u8> {
    fn wipe(&mut self) {
        self.zeroize();
    }
}

impl Wipe for serde_json::Value {
    /// Every string in the value (the object keys are names, not secrets).
    fn wipe(&mut self) {
        match self {
            serde_json::Value::String(text) => text.zeroize(),
            serde_json::Value::Array(items) => items.iter_mut().for_each(Wipe::wipe),
            serde_json::Value::Object(map) => map.values_mut().for_each(Wipe::wipe),
            _ => {}
        }
    }
}

/// A secret value: `Debug` and `Display` print `********`, it is wiped on drop, and it is read
/// only through [`Secret::expose`], so every disclosure is visible at its call site. It
/// serialises and deserialises as the value itself, for the wire types that carry a secret on
/// purpose (a plugin's `configure` parameters, a minted credential). It has no `==`.
#[derive(Clone, Default)]
pub struct Secret<T: Wipe>(T);

impl<T: Wipe> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; every call site is a deliberate disclosure.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Wipe> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Wipe> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

impl<T: Wipe> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl<T: Wipe> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl<T: Wipe + serde::Serialize> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Wipe + serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

/// A bearer secret: prefix plus 48 hex characters (192 random bits). A [`Secret`]: never
/// printed, wiped on drop, compared only through its hash.
#[derive(Debug, Clone)]
pub struct SecretToken(Secret<String>);

impl SecretToken {
    /// A new random token of the given kind.
    pub fn generate(kind: TokenKind) -> Self {
        let mut bytes = [0u8; 24];
        fill_random(&mut bytes);
        let token = format!("{}{}", kind.prefix(), hex::encode(bytes));
        bytes.zeroize();
        Self(Secret::new(token))
    }

    /// Wraps a token read from a file or a header, checking its shape so that garbage never
    /// reaches a hash lookup.
    pub fn parse(kind: TokenKind, text: &str) -> Option<Self> {
        let rest = text.strip_prefix(kind.prefix())?;
        (rest.len() == 48
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(Secret::new(text.to_owned())))
    }

    /// The secret text; every call site is a deliberate disclosure.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// A copy to hand to the caller it was made for (an API answer), still redacted in
    /// `Debug` and wiped when dropped.
    pub fn to_secret(&self) -> Secret<String> {
        self.0.clone()
    }

    /// The SHA-256 under which the token is stored.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose())
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// The SHA-256 of a secret, as lowercase hex. Compared only in constant time
/// ([`TokenHash::matches`]).
#[derive(Debug, Clone)]
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
            SecretToken::parse(TokenKind::Vend, t.expose()).map(|p| p.expose().to_owned()),
            Some(t.expose().to_owned())
        );
        assert_ne!(SecretToken::generate(TokenKind::Vend).expose(), t.expose());
        assert_eq!(TokenKind::of(t.expose()), Some(TokenKind::Vend));
    }

    #[test]
    fn proxy_placeholders_are_a_kind_of_their_own() {
        let placeholder = SecretToken::generate(TokenKind::ProxyPlaceholder);
        assert!(placeholder.expose().starts_with("ckp_"));
        assert_eq!(placeholder.expose().len(), 52);
        assert_eq!(
            TokenKind::of(placeholder.expose()),
            Some(TokenKind::ProxyPlaceholder)
        );
        assert!(SecretToken::parse(TokenKind::Vend, placeholder.expose()).is_none());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(SecretToken::parse(TokenKind::Vend, "ckr_abc").is_none());
        assert!(SecretToken::parse(TokenKind::Admin, &format!("ckr_{}", "a".repeat(48))).is_none());
        assert!(SecretToken::parse(TokenKind::Admin, &format!("cka_{}", "A".repeat(48))).is_none());
    }

    #[test]
    fn secrets_never_print() {
        let t = SecretToken::generate(TokenKind::Admin);
        let secret_part = &t.expose()[4..];
        assert!(!format!("{t:?}").contains(secret_part));
        assert!(!format!("{t}").contains(secret_part));
    }

    #[test]
    fn a_secret_never_prints_and_serialises_as_itself() {
        let secret = Secret::new("dtn_master".to_owned());
        let config: Secret<serde_json::Value> =
            serde_json::from_str(r#"{"api_key": "dtn_master", "ids": ["x"]}"#).expect("json");
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{config:?}"),
            format!("{:?}", Some(&secret)),
        ] {
            assert!(!shown.contains("dtn_master"), "{shown}");
        }
        assert_eq!(secret.expose(), "dtn_master");
        assert_eq!(
            serde_json::to_string(&config).expect("json"),
            r#"{"api_key":"dtn_master","ids":["x"]}"#
        );
        let mut value = config.expose().clone();
        value.wipe();
        assert_eq!(
            value["api_key"].as_str().map(str::len),
            Some(0),
            "strings are wiped"
        );
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

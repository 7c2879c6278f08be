//! The OIDC provider's keys and tokens (§11): Ed25519 (EdDSA, the default), P-256 (ES256) or
//! 3072-bit RSA (RS256) signing keys stored sealed and shared by every node, JWTs signed and
//! verified here, and the checks a JWT must pass to be
//! accepted as an agent bearer: a published key whose `alg` matches, `typ: at+jwt`, `iss` the
//! issuer, `aud` containing the issuer, `exp` and `nbf` with 60 s of leeway.

use std::sync::RwLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use creddy_core::Timestamp;
use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_core::secret::Secret;
use creddy_core::signing::KeyState;
use creddy_store::SigningKeyRecord;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use sha2::Digest;
use zeroize::Zeroizing;

use crate::engine::sealing::Sealer;
use crate::engine::state::Engine;

/// The size of generated RSA keys.
const RSA_BITS: usize = 3072;
/// Clock leeway for `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 60;

/// The private half of a key.
enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    /// Signed through ring's constant-time RSA (the pure-Rust `rsa` crate only generates).
    Rsa(ring::signature::RsaKeyPair),
}

/// The key types wipe their secret on drop where they can (Ed25519 and P-256 keys zeroize
/// themselves); there is nothing more to wipe from outside.
impl creddy_core::secret::Wipe for PrivateKey {
    fn wipe(&mut self) {}
}

/// The public half of a key.
#[derive(Debug)]
enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    /// Big-endian modulus and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl PrivateKey {
    /// A key from its stored secret: 32 bytes for EdDSA and ES256, the PKCS#1 DER of the
    /// private key for RS256.
    fn from_seed(alg: &str, seed: &[u8]) -> Option<Self> {
        if alg == "RS256" {
            return ring::signature::RsaKeyPair::from_der(seed)
                .ok()
                .map(Self::Rsa);
        }
        let seed = <[u8; 32]>::try_from(seed).ok()?;
        match alg {
            "EdDSA" => Some(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))),
            "ES256" => p256::ecdsa::SigningKey::from_bytes(&seed.into())
                .ok()
                .map(Self::P256),
            _ => None,
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            Self::P256(k) => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = k.sign(message);
                // Low S only: the verifier refuses the other half (see `verify`).
                signature
                    .normalize_s()
                    .unwrap_or(signature)
                    .to_bytes()
                    .to_vec()
            }
            Self::Rsa(k) => {
                let mut signature = vec![0u8; k.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                match k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut signature,
                ) {
                    Ok(()) => signature,
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// The public key as a JWK (without `kid`, `use`, `alg`).
    fn public_jwk(&self) -> Value {
        match self {
            Self::Ed25519(k) => json!({"kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(k.verifying_key().as_bytes())}),
            Self::P256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(point.x().map(|x| x.to_vec()).unwrap_or_default()),
                    "y": URL_SAFE_NO_PAD.encode(point.y().map(|y| y.to_vec()).unwrap_or_default())})
            }
            Self::Rsa(k) => {
                let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&parts.n),
                    "e": URL_SAFE_NO_PAD.encode(&parts.e)})
            }
        }
    }
}

impl PublicKey {
    /// The public key of a published JWK.
    fn from_jwk(jwk: &Value) -> Option<Self> {
        let field = |name: &str| {
            jwk[name]
                .as_str()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        };
        match jwk["alg"].as_str()? {
            "EdDSA" => {
                let x = <[u8; 32]>::try_from(field("x")?.as_slice()).ok()?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .ok()
                    .map(Self::Ed25519)
            }
            "ES256" => {
                let mut sec1 = vec![4u8];
                sec1.extend(field("x")?);
                sec1.extend(field("y")?);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .ok()
                    .map(Self::P256)
            }
            "RS256" => Some(Self::Rsa {
                n: field("n")?,
                e: field("e")?,
            }),
            _ => None,
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ed25519(k) => <[u8; 64]>::try_from(signature).is_ok_and(|s| {
                k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&s))
                    .is_ok()
            }),
            // ECDSA signatures are malleable: (r, s) and (r, n - s) both verify. Only the low
            // form is accepted, so one token has one string (one `jti`, one token).
            Self::P256(k) => p256::ecdsa::Signature::from_slice(signature).is_ok_and(|s| {
                use p256::ecdsa::signature::Verifier;
                s.normalize_s().is_none() && k.verify(message, &s).is_ok()
            }),
            Self::Rsa { n, e } => ring::signature::RsaPublicKeyComponents { n, e }
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    message,
                    signature,
                )
                .is_ok(),
        }
    }
}

/// A key loaded for use (`Debug` shows its public half and `********` for the private one).
#[derive(Debug)]
struct LoadedKey {
    kid: String,
    alg: String,
    state: KeyState,
    private: Option<Secret<PrivateKey>>,
    public: PublicKey,
    jwk: Value,
}

/// The keys in force, loaded from the store.
#[derive(Debug, Default)]
pub struct Keys {
    loaded: RwLock<Vec<LoadedKey>>,
}

fn sealing_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// A new secret of `alg` and the key it makes. Random 32 bytes make an Ed25519 seed; for
/// P-256 they are valid below the group order, which a few draws reach; an RSA key is
/// generated (3072 bits, a second or so) and kept as PKCS#1 DER.
fn new_secret(alg: &str) -> Option<(Zeroizing<Vec<u8>>, PrivateKey)> {
    if alg == "RS256" {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS).ok()?;
        let der = Zeroizing::new(key.to_pkcs1_der().ok()?.as_bytes().to_vec());
        let private = PrivateKey::from_seed(alg, &der)?;
        return Some((der, private));
    }
    (0..16).find_map(|_| {
        let mut seed = Zeroizing::new(vec![0u8; 32]);
        creddy_core::secret::fill_random(seed.as_mut());
        PrivateKey::from_seed(alg, &seed).map(|k| (seed, k))
    })
}

/// A new key of `alg` (`EdDSA`, `ES256` or `RS256`), its record (private key sealed) ready to store.
pub fn new_key(sealer: &Sealer, now: Timestamp, alg: &str) -> Option<SigningKeyRecord> {
    let (seed, private) = new_secret(alg)?;
    let mut jwk = private.public_jwk();
    let kid = hex::encode(&sha2::Sha256::digest(jwk.to_string().as_bytes())[..8]);
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg);
    Some(SigningKeyRecord {
        sealed_private_key: sealer.seal(&sealing_context(&kid), seed.as_ref()),
        kid,
        alg: alg.to_owned(),
        state: KeyState::Current,
        public_jwk: jwk.to_string(),
        created_at: now,
        retires_at: None,
    })
}

impl Keys {
    /// Loads every current and grace key from the store.
    pub async fn reload(&self, state: &Engine) -> Result<(), creddy_store::StoreError> {
        let mut loaded = Vec::new();
        for record in state.store().signing_keys().await? {
            if record.state == KeyState::Retired {
                continue;
            }
            let Some(jwk) = serde_json::from_str::<Value>(&record.public_jwk).ok() else {
                continue;
            };
            let Some(public) = PublicKey::from_jwk(&jwk) else {
                continue;
            };
            let private = state
                .sealer()
                .open(&sealing_context(&record.kid), &record.sealed_private_key)
                .ok()
                .and_then(|seed| PrivateKey::from_seed(&record.alg, &seed))
                .map(Secret::new);
            loaded.push(LoadedKey {
                kid: record.kid,
                alg: record.alg,
                state: record.state,
                private,
                public,
                jwk,
            });
        }
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded;
        Ok(())
    }

    /// The published keys (JWKS `keys`).
    pub fn jwks(&self) -> Vec<Value> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|k| k.jwk.clone())
            .collect()
    }

    /// Signs `claims` with the current key, with header `typ`.
    pub fn sign(&self, claims: &Value, typ: &str) -> Option<String> {
        let keys = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = keys.iter().find(|k| k.state == KeyState::Current)?;
        let private = key.private.as_ref()?.expose();
        let header = json!({"alg": key.alg, "kid": key.kid, "typ": typ});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = private.sign(input.as_bytes());
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The verified claims of an access token, or why it is refused.
    fn verify_with_loaded(&self, token: &str) -> Result<Value, Refusal> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Refusal::Malformed);
        let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| Refusal::Malformed)?;
        if header["typ"] != "at+jwt" {
            return Err(Refusal::Invalid("not an access token (typ must be at+jwt)"));
        }
        let kid = header["kid"].as_str().ok_or(Refusal::Malformed)?;
        let keys = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(Refusal::UnknownKey)?;
        if header["alg"] != key.alg.as_str() {
            return Err(Refusal::Invalid("the alg does not match the key's"));
        }
        if !key
            .public
            .verify(format!("{h}.{c}").as_bytes(), &decode(s)?)
        {
            return Err(Refusal::Invalid("bad signature"));
        }
        serde_json::from_slice(&decode(c)?).map_err(|_| Refusal::Malformed)
    }

    /// Verifies an access token: signature (reloading the keys once for an unknown `kid`,
    /// which another node may have created), issuer, audience and times.
    pub async fn verify(&self, state: &Engine, token: &str) -> Result<Value, Refusal> {
        let claims = match self.verify_with_loaded(token) {
            Err(Refusal::UnknownKey) => {
                self.reload(state).await.map_err(|_| Refusal::UnknownKey)?;
                self.verify_with_loaded(token)?
            }
            other => other?,
        };
        let issuer = state.issuer();
        if claims["iss"] != issuer {
            return Err(Refusal::Invalid("wrong issuer"));
        }
        let audience_ok = match &claims["aud"] {
            Value::String(a) => a == issuer,
            Value::Array(list) => list.iter().any(|a| a == issuer),
            _ => false,
        };
        if !audience_ok {
            return Err(Refusal::Invalid(
                "the audience does not include this server",
            ));
        }
        let now = state.clock().now().as_millis() / 1000;
        let exp = claims["exp"].as_i64().ok_or(Refusal::Invalid("no exp"))?;
        if exp + LEEWAY_SECONDS < now {
            return Err(Refusal::Invalid("expired"));
        }
        if claims["nbf"]
            .as_i64()
            .is_some_and(|nbf| nbf - LEEWAY_SECONDS > now)
        {
            return Err(Refusal::Invalid("not yet valid"));
        }
        Ok(claims)
    }
}

/// Why a JWT is refused (for the log; callers answer 401 without details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not three base64url parts of JSON.
    Malformed,
    /// No published key has that `kid`.
    UnknownKey,
    /// It fails a check.
    Invalid(&'static str),
}

impl From<Refusal> for &'static str {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey => "unknown key",
            Refusal::Invalid(why) => why,
        }
    }
}

/// Makes sure a current key exists (the first node to start creates it), loads the keys,
/// and retires grace keys whose period ended.
pub async fn prepare(state: &Engine) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    if !state
        .store()
        .signing_keys()
        .await?
        .iter()
        .any(|k| k.state == KeyState::Current)
    {
        let Some(key) = new_key(state.sealer(), now, &state.settings().oidc.alg) else {
            return Err(creddy_store::StoreError::Corrupt(
                "could not generate a signing key".into(),
            ));
        };
        let event = AuditEvent::new(Action::KeyRotated, Actor::system(), now)
            .with_details(json!({"kid": key.kid, "alg": key.alg, "previous": null}));
        match state.store().add_current_key(&key, now, true, &event).await {
            Ok(_) | Err(creddy_store::StoreError::NameTaken) => {}
            Err(e) => return Err(e),
        }
    }
    retire_ended(state).await?;
    state.keys().reload(state).await
}

/// Rotates the current key when it is older than `oidc.rotate_every`, then retires grace
/// keys whose period ended (`key.retired`); reloads when something changed. Nodes racing to
/// rotate are settled by the store: one current key at a time.
pub async fn retire_ended(state: &Engine) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    let settings = state.settings().oidc.clone();
    if let Some(every) = settings.rotate_every {
        let current = state
            .store()
            .signing_keys()
            .await?
            .into_iter()
            .find(|k| k.state == KeyState::Current);
        if current.is_some_and(|k| now.seconds_since(k.created_at) >= every) {
            match rotate(
                state,
                Actor::system(),
                settings.rotation_grace,
                &settings.alg,
            )
            .await
            {
                Ok(_) | Err(creddy_store::StoreError::NameTaken) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let retired = state
        .store()
        .retire_keys(now, |kid| {
            AuditEvent::new(Action::KeyRetired, Actor::system(), now)
                .with_details(json!({"kid": kid}))
        })
        .await?;
    if !retired.is_empty() {
        tracing::info!(?retired, "signing keys retired");
        state.keys().reload(state).await?;
    }
    Ok(())
}

/// Every signing key, newest first (`admin:keys:read`).
pub(crate) async fn keys(
    engine: &Engine,
    principal: &crate::engine::auth::Principal,
) -> Result<Vec<SigningKeyRecord>, crate::engine::error::EngineError> {
    principal.require_admin("admin:keys:read")?;
    Ok(engine.store().signing_keys().await?)
}

/// An admin's rotation: `alg` (the configured one when absent) must be offered; the previous
/// key stays published for `grace` (the configured grace when absent), never less than a
/// token's lifetime.
pub(crate) async fn rotate_as_asked(
    engine: &Engine,
    principal: &crate::engine::auth::Principal,
    alg: Option<String>,
    grace: Option<&str>,
) -> Result<(SigningKeyRecord, Option<String>, Timestamp), crate::engine::error::EngineError> {
    use crate::engine::error::EngineError;
    principal.require_admin("admin:keys:write")?;
    let settings = engine.settings().oidc.clone();
    let alg = alg.unwrap_or_else(|| settings.alg.clone());
    if !crate::config::SIGNING_ALGS.contains(&alg.as_str()) {
        return Err(
            EngineError::invalid_request(format!("algorithm '{alg}' is not offered"))
                .with_remedy("use EdDSA, ES256 or RS256"),
        );
    }
    let grace = match grace {
        Some(text) => creddy_core::Duration::parse(text)
            .map_err(|e| EngineError::invalid_request(format!("grace: {e}")))?
            .as_seconds(),
        None => settings.rotation_grace,
    }
    .max(settings.token_ttl);
    Ok(rotate(engine, principal.actor(), grace, &alg).await?)
}

/// A new current key; the previous one stays published for `grace_seconds`.
pub async fn rotate(
    state: &Engine,
    actor: Actor,
    grace_seconds: u64,
    alg: &str,
) -> Result<(SigningKeyRecord, Option<String>, Timestamp), creddy_store::StoreError> {
    let now = state.clock().now();
    let previous = state
        .store()
        .signing_keys()
        .await?
        .into_iter()
        .find(|k| k.state == KeyState::Current)
        .map(|k| k.kid);
    let Some(key) = new_key(state.sealer(), now, alg) else {
        return Err(creddy_store::StoreError::Corrupt(format!(
            "could not generate a {alg} signing key"
        )));
    };
    let retires_at = now.plus_seconds(grace_seconds);
    let event = AuditEvent::new(Action::KeyRotated, actor, now).with_details(
        json!({"kid": key.kid, "alg": key.alg, "previous": previous, "previous_retires_at": retires_at}),
    );
    state
        .store()
        .add_current_key(&key, retires_at, false, &event)
        .await?;
    state.keys().reload(state).await?;
    Ok((key, previous, retires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whoever logs the keys with `{:?}` sees their ids and public halves, never a seed.
    #[test]
    fn the_keys_print_no_private_half() {
        let seed = [0xA7u8; 32];
        let private = PrivateKey::from_seed("EdDSA", &seed).expect("an Ed25519 key");
        let mut jwk = private.public_jwk();
        jwk["alg"] = json!("EdDSA");
        let public = PublicKey::from_jwk(&jwk).expect("its public half");
        let keys = Keys::default();
        keys.loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(LoadedKey {
                kid: "kid-1".into(),
                alg: "EdDSA".into(),
                state: KeyState::Current,
                private: Some(Secret::new(private)),
                public,
                jwk,
            });
        let printed = format!("{keys:?}");
        assert!(printed.contains("kid-1"), "{printed}");
        for leak in ["167, 167", "a7a7", &URL_SAFE_NO_PAD.encode(seed)] {
            assert!(!printed.contains(leak), "{leak} shows in {printed}");
        }
    }
}

//! The OIDC provider's keys and tokens (§11): Ed25519 signing keys (EdDSA) stored sealed and
//! shared by every node, JWTs signed and verified here, and the checks a JWT must pass to be
//! accepted as an agent bearer: a published key whose `alg` matches, `typ: at+jwt`, `iss` the
//! issuer, `aud` containing the issuer, `exp` and `nbf` with 60 s of leeway.

use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use creddy_core::Timestamp;
use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_store::SigningKeyRecord;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::Digest;
use zeroize::Zeroizing;

use crate::sealing::Sealer;
use crate::state::AppState;

/// The only algorithm offered so far.
pub const ALG: &str = "EdDSA";
/// Clock leeway for `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 60;

/// A key loaded for use.
struct LoadedKey {
    kid: String,
    state: String,
    signing: Option<SigningKey>,
    verifying: VerifyingKey,
    jwk: Value,
}

/// The keys in force, loaded from the store.
#[derive(Default)]
pub struct Keys {
    loaded: RwLock<Vec<LoadedKey>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn sealing_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// A new Ed25519 key, its record (private key sealed) ready to store.
pub fn new_key(sealer: &Sealer, now: Timestamp) -> SigningKeyRecord {
    let mut seed = Zeroizing::new([0u8; 32]);
    creddy_core::secret::fill_random(seed.as_mut());
    let signing = SigningKey::from_bytes(&seed);
    let public = signing.verifying_key();
    let kid = hex::encode(&sha2::Sha256::digest(public.as_bytes())[..8]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public.as_bytes()),
        "kid": kid, "use": "sig", "alg": ALG});
    SigningKeyRecord {
        sealed_private_key: sealer.seal(&sealing_context(&kid), seed.as_ref()),
        kid,
        alg: ALG.to_owned(),
        state: "current".to_owned(),
        public_jwk: jwk.to_string(),
        created_at: now,
        retires_at: None,
    }
}

impl Keys {
    /// Loads every current and grace key from the store.
    pub async fn reload(&self, state: &AppState) -> Result<(), creddy_store::StoreError> {
        let mut loaded = Vec::new();
        for record in state.store().signing_keys().await? {
            if record.state == "retired" || record.alg != ALG {
                continue;
            }
            let Ok(jwk) = serde_json::from_str::<Value>(&record.public_jwk) else {
                continue;
            };
            let signing = state
                .sealer()
                .open(&sealing_context(&record.kid), &record.sealed_private_key)
                .ok()
                .and_then(|seed| <[u8; 32]>::try_from(seed.as_slice()).ok())
                .map(|seed| SigningKey::from_bytes(&seed));
            let Some(verifying) = jwk["x"]
                .as_str()
                .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            else {
                continue;
            };
            loaded.push(LoadedKey {
                kid: record.kid,
                state: record.state,
                signing,
                verifying,
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
        let key = keys.iter().find(|k| k.state == "current")?;
        let signing = key.signing.as_ref()?;
        let header = json!({"alg": ALG, "kid": key.kid, "typ": typ});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = signing.sign(input.as_bytes());
        Some(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
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
        if header["alg"] != ALG {
            return Err(Refusal::Invalid("unsupported alg"));
        }
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
        let signature =
            <[u8; 64]>::try_from(decode(s)?.as_slice()).map_err(|_| Refusal::Malformed)?;
        key.verifying
            .verify_strict(
                format!("{h}.{c}").as_bytes(),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| Refusal::Invalid("bad signature"))?;
        serde_json::from_slice(&decode(c)?).map_err(|_| Refusal::Malformed)
    }

    /// Verifies an access token: signature (reloading the keys once for an unknown `kid`,
    /// which another node may have created), issuer, audience and times.
    pub async fn verify(&self, state: &AppState, token: &str) -> Result<Value, Refusal> {
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
pub async fn prepare(state: &AppState) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    if !state
        .store()
        .signing_keys()
        .await?
        .iter()
        .any(|k| k.state == "current")
    {
        let key = new_key(state.sealer(), now);
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
pub async fn retire_ended(state: &AppState) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    let settings = state.settings().oidc;
    if let Some(every) = settings.rotate_every {
        let current = state
            .store()
            .signing_keys()
            .await?
            .into_iter()
            .find(|k| k.state == "current");
        if current.is_some_and(|k| now.seconds_since(k.created_at) >= every) {
            match rotate(state, Actor::system(), settings.rotation_grace).await {
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

/// A new current key; the previous one stays published for `grace_seconds`.
pub async fn rotate(
    state: &AppState,
    actor: Actor,
    grace_seconds: u64,
) -> Result<(SigningKeyRecord, Option<String>, Timestamp), creddy_store::StoreError> {
    let now = state.clock().now();
    let previous = state
        .store()
        .signing_keys()
        .await?
        .into_iter()
        .find(|k| k.state == "current")
        .map(|k| k.kid);
    let key = new_key(state.sealer(), now);
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

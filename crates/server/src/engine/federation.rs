//! Workload identity (§18): whether a job's OIDC token, signed by an issuer creddy does not
//! run, admits a federated agent under one of the `[[trust]]` tables.
//!
//! A token is read with no trust in anything it says until its signature verifies: the
//! header must name RS256, ES256 or EdDSA (`none`, HMAC and everything else refused), carry
//! a `kid` and none of `jku`, `x5u`, `jwk`, `x5c` or `crit` (keys come only from the trust's
//! own source); `iss` picks the trusts to try, in file order. For each, the key with that
//! `kid` in the issuer's JWKS (fetched once more when the `kid` is unknown, at most every
//! [`REFETCH_EVERY_SECONDS`]) must have the header's algorithm and verify the signature
//! (RSA through ring's constant-time code, 2048 to 8192 bits); then `aud` must contain the
//! trust's audience, `exp`, `nbf` and `iat` must hold with 60 s of leeway, a token may live
//! at most 24 h, and every bound claim must match. The first trust that admits wins; when
//! none does, the refusal names each trust tried and what failed under it.
//!
//! Keys are fetched from `<issuer>/.well-known/openid-configuration`'s `jwks_uri`, a given
//! `jwks_url`, or read from a `jwks_file`: with a 10 s timeout, no redirects, at most 64 KiB
//! and 100 keys, and kept as `Cache-Control: max-age` says (at most an hour; five minutes
//! without it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use creddy_core::Timestamp;
use creddy_core::names::AgentName;
use creddy_core::trust::{ClaimMismatch, KeySource, Trust, TrustSet};
use serde_json::{Map, Value};

/// The longest token read.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// The most keys one JWKS may hold.
const MAX_KEYS: usize = 100;
/// Clock leeway for `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 60;
/// The longest a token may be valid.
const MAX_LIFETIME_SECONDS: i64 = 86_400;
/// How long fetched keys are kept without `Cache-Control`, and at most.
const DEFAULT_KEEP_SECONDS: i64 = 300;
const MAX_KEEP_SECONDS: i64 = 3_600;
/// How often an unknown `kid` may send creddy back to the issuer for its keys.
pub const REFETCH_EVERY_SECONDS: i64 = 30;
/// Fetch timeout.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A token's algorithm (the only three accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// One verification key of a JWKS.
#[derive(Debug, Clone)]
struct Key {
    kid: String,
    alg: Alg,
    /// The public key as ring takes it: RSA `n` and `e`; the uncompressed P-256 point; the
    /// Ed25519 key.
    material: Material,
}

#[derive(Debug, Clone)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Point(Vec<u8>),
}

impl Key {
    /// A key from a JWK, or `None` when it is not a signing key of an accepted kind. A JWK
    /// without `alg` takes the one its type implies.
    fn from_jwk(jwk: &Value) -> Option<Self> {
        let kid = jwk["kid"].as_str().filter(|k| k.len() <= 256)?.to_owned();
        if jwk["use"].as_str().is_some_and(|u| u != "sig") {
            return None;
        }
        let field = |name: &str| {
            jwk[name]
                .as_str()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        };
        let (implied, material) = match (jwk["kty"].as_str()?, jwk["crv"].as_str()) {
            ("RSA", _) => (
                Alg::Rs256,
                Material::Rsa {
                    n: field("n")?,
                    e: field("e")?,
                },
            ),
            ("EC", Some("P-256")) => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                (Alg::Es256, Material::Point([&[4u8][..], &x, &y].concat()))
            }
            ("OKP", Some("Ed25519")) => {
                let x = field("x").filter(|x| x.len() == 32)?;
                (Alg::EdDsa, Material::Point(x))
            }
            _ => return None,
        };
        let alg = match jwk["alg"].as_str() {
            None => implied,
            Some(named) => Alg::parse(named).filter(|a| *a == implied)?,
        };
        Some(Self { kid, alg, material })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{
            ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
            UnparsedPublicKey,
        };
        match (&self.material, self.alg) {
            (Material::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Material::Point(point), Alg::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::Point(point), Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, point)
                .verify(message, signature)
                .is_ok(),
            _ => false,
        }
    }
}

/// A token admitted by a trust.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The trust that admitted it.
    pub trust: Trust,
    /// The federated agent's name.
    pub agent: AgentName,
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The bound claims' values.
    pub claims: BTreeMap<String, String>,
}

/// Why a token was refused. Its text never holds the token; claim values may appear (they
/// name workloads, not secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWT this module will read.
    Malformed(&'static str),
    /// The header asks for something refused.
    Header(String),
    /// No trust names this issuer.
    UnknownIssuer(String),
    /// The trust's keys could not be had.
    Keys {
        /// The trust's name.
        trust: String,
        /// What went wrong.
        problem: String,
    },
    /// Several trusts name the issuer and each refused (in file order).
    EveryTrust(Vec<Refusal>),
    /// A check failed under a trust.
    Failed {
        /// The trust's name.
        trust: String,
        /// The check that failed.
        check: Check,
    },
}

/// A check of a token under one trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No key of the JWKS has the token's `kid`.
    UnknownKey(String),
    /// The key has another algorithm than the header.
    AlgMismatch,
    /// The signature does not verify.
    Signature,
    /// `aud` does not contain the trust's audience.
    Audience(String),
    /// A time claim fails.
    Time(&'static str),
    /// No `sub`.
    NoSubject,
    /// A bound claim fails, or the agent name cannot be made.
    Claim(ClaimMismatch),
}

impl Refusal {
    /// The trust it was refused under, if it got that far (the first, when several were).
    pub fn trust(&self) -> Option<&str> {
        match self {
            Self::Keys { trust, .. } | Self::Failed { trust, .. } => Some(trust),
            Self::EveryTrust(each) => each.first().and_then(Refusal::trust),
            _ => None,
        }
    }

    /// The claim that failed, if one did (under the first trust, when several were tried).
    pub fn claim(&self) -> Option<&str> {
        match self {
            Self::EveryTrust(each) => each.first().and_then(Refusal::claim),
            Self::Failed {
                check: Check::Claim(mismatch),
                ..
            } => Some(&mismatch.claim),
            Self::Failed {
                check: Check::Audience(_),
                ..
            } => Some("aud"),
            Self::Failed {
                check: Check::NoSubject,
                ..
            } => Some("sub"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "the token is not a JWT creddy reads: {why}"),
            Self::Header(why) => write!(f, "the token's header is refused: {why}"),
            Self::UnknownIssuer(issuer) => write!(
                f,
                "no [[trust]] names the issuer '{issuer}': add one with this issuer to the server's configuration"
            ),
            Self::EveryTrust(each) => {
                let texts: Vec<String> = each.iter().map(ToString::to_string).collect();
                write!(f, "{}", texts.join("; "))
            }
            Self::Keys { trust, problem } => {
                write!(
                    f,
                    "trust '{trust}': the issuer's keys are unavailable: {problem}"
                )
            }
            Self::Failed { trust, check } => {
                write!(f, "trust '{trust}': ")?;
                match check {
                    Check::UnknownKey(kid) => write!(f, "no key '{kid}' in the issuer's JWKS"),
                    Check::AlgMismatch => write!(f, "the key's algorithm is not the header's"),
                    Check::Signature => write!(f, "the signature does not verify"),
                    Check::Audience(wanted) => write!(
                        f,
                        "the token's aud does not contain '{wanted}': request the token for that audience (CREDDY_OIDC_AUDIENCE) or change the trust's audience"
                    ),
                    Check::Time(why) => write!(f, "{why}"),
                    Check::NoSubject => write!(f, "the token has no sub"),
                    Check::Claim(mismatch) => write!(
                        f,
                        "{mismatch}: change the job, or the trust's claims if this workload should be admitted"
                    ),
                }
            }
        }
    }
}

/// A token split and decoded, not yet trusted.
struct Unverified<'a> {
    signed: &'a str,
    signature: Vec<u8>,
    alg: Alg,
    kid: String,
    claims: Map<String, Value>,
}

impl<'a> Unverified<'a> {
    fn read(token: &'a str) -> Result<Self, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Malformed("longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed("not three dot-separated parts"));
        };
        let object = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
                .ok_or(Refusal::Malformed("a part is not base64url JSON"))
        };
        let header = object(h)?;
        let claims = object(c)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| Refusal::Malformed("the signature is not base64url"))?;
        let named = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        let alg = Alg::parse(named).ok_or_else(|| {
            Refusal::Header(format!(
                "alg '{}' is not accepted (RS256, ES256 or EdDSA)",
                named.escape_default()
            ))
        })?;
        for refused in ["jku", "x5u", "jwk", "x5c", "crit"] {
            if header.contains_key(refused) {
                return Err(Refusal::Header(format!(
                    "'{refused}' is not accepted: keys come only from the trust's own source"
                )));
            }
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| Refusal::Header("it names no key (kid)".into()))?
            .to_owned();
        Ok(Self {
            signed: &token[..h.len() + 1 + c.len()],
            signature,
            alg,
            kid,
            claims,
        })
    }

    fn issuer(&self) -> Result<&str, Refusal> {
        self.claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(Refusal::Malformed("no iss"))
    }
}

/// Keys fetched from one source, and when.
#[derive(Debug, Clone)]
struct Fetched {
    keys: Arc<Vec<Key>>,
    at: i64,
    keep: i64,
}

/// Verifies tokens against trusts, keeping each source's keys.
#[derive(Debug)]
pub struct Federation {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Fetched>>,
}

impl Default for Federation {
    /// Needs the process's rustls provider, which [`crate::Server::start`] installs first.
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("creddy/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            cache: Mutex::default(),
        }
    }
}

impl Federation {
    /// The admission of `token` by the first trust of `trusts` that accepts it at `now`.
    pub async fn admit(
        &self,
        trusts: &TrustSet,
        token: &str,
        now: Timestamp,
    ) -> Result<Admission, Refusal> {
        let token = Unverified::read(token)?;
        let issuer = token.issuer()?.to_owned();
        let mut refusals = Vec::new();
        for trust in trusts.of_issuer(&issuer) {
            match self.admit_by(trust, &token, now).await {
                Ok(admission) => return Ok(admission),
                Err(refused) => refusals.push(refused),
            }
        }
        Err(match refusals.len() {
            0 => Refusal::UnknownIssuer(issuer.escape_default().to_string()),
            1 => refusals.remove(0),
            _ => Refusal::EveryTrust(refusals),
        })
    }

    async fn admit_by(
        &self,
        trust: &Trust,
        token: &Unverified<'_>,
        now: Timestamp,
    ) -> Result<Admission, Refusal> {
        let failed = |check: Check| Refusal::Failed {
            trust: trust.name.clone(),
            check,
        };
        let key = self.key(trust, &token.kid, now).await?;
        if key.alg != token.alg {
            return Err(failed(Check::AlgMismatch));
        }
        if !key.verifies(token.signed.as_bytes(), &token.signature) {
            return Err(failed(Check::Signature));
        }
        let claims = &token.claims;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == trust.audience,
            Some(Value::Array(list)) => list.iter().any(|a| *a == *trust.audience),
            _ => false,
        };
        if !audience_ok {
            return Err(failed(Check::Audience(trust.audience.clone())));
        }
        check_times(claims, now.as_millis() / 1000).map_err(|why| failed(Check::Time(why)))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| failed(Check::NoSubject))?
            .to_owned();
        let values = trust
            .match_claims(claims)
            .map_err(|m| failed(Check::Claim(m)))?;
        let agent = trust
            .agent_name(claims)
            .map_err(|m| failed(Check::Claim(m)))?;
        Ok(Admission {
            trust: trust.clone(),
            agent,
            issuer: trust.issuer.clone(),
            subject,
            claims: values,
        })
    }

    /// The key `kid` of `trust`'s source: from the cache while it is fresh, else fetched;
    /// an unknown `kid` fetches once more unless the keys are younger than
    /// [`REFETCH_EVERY_SECONDS`].
    async fn key(&self, trust: &Trust, kid: &str, now: Timestamp) -> Result<Key, Refusal> {
        let now = now.as_millis() / 1000;
        let source = source_key(trust);
        let cached = self.cached(&source);
        let fresh = cached.as_ref().filter(|f| now < f.at + f.keep);
        let keys = match fresh {
            Some(fetched) => fetched.clone(),
            None => self.fetch(trust, &source, now).await?,
        };
        if let Some(key) = keys.keys.iter().find(|k| k.kid == kid) {
            return Ok(key.clone());
        }
        if now >= keys.at + REFETCH_EVERY_SECONDS {
            let again = self.fetch(trust, &source, now).await?;
            if let Some(key) = again.keys.iter().find(|k| k.kid == kid) {
                return Ok(key.clone());
            }
        }
        Err(Refusal::Failed {
            trust: trust.name.clone(),
            check: Check::UnknownKey(kid.escape_default().to_string()),
        })
    }

    fn cached(&self, source: &str) -> Option<Fetched> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(source)
            .cloned()
    }

    async fn fetch(&self, trust: &Trust, source: &str, now: i64) -> Result<Fetched, Refusal> {
        let unavailable = |problem: String| Refusal::Keys {
            trust: trust.name.clone(),
            problem,
        };
        let (document, keep) = match &trust.keys {
            KeySource::File(path) => (read_file(path).map_err(unavailable)?, MAX_KEEP_SECONDS),
            KeySource::Url(url) => self.get(url).await.map_err(unavailable)?,
            KeySource::Discovery => {
                let url = format!("{}/.well-known/openid-configuration", trust.issuer);
                let (discovery, _) = self.get(&url).await.map_err(unavailable)?;
                let jwks_uri = discovery["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| unavailable(format!("{url} names no jwks_uri")))?;
                let jwks_uri =
                    creddy_core::trust::check_url("jwks_uri", jwks_uri).map_err(unavailable)?;
                self.get(&jwks_uri).await.map_err(unavailable)?
            }
        };
        let keys = document["keys"]
            .as_array()
            .ok_or_else(|| unavailable("the JWKS has no keys array".into()))?;
        if keys.len() > MAX_KEYS {
            return Err(unavailable(format!(
                "the JWKS holds more than {MAX_KEYS} keys"
            )));
        }
        let fetched = Fetched {
            keys: Arc::new(keys.iter().filter_map(Key::from_jwk).collect()),
            at: now,
            keep,
        };
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded by the trusts: a source no trust names any more is forgotten.
        if cache.len() >= creddy_core::trust::MAX_TRUSTS {
            cache.clear();
        }
        cache.insert(source.to_owned(), fetched.clone());
        Ok(fetched)
    }

    /// A JSON document and how long it may be kept, fetched with the bounds above.
    async fn get(&self, url: &str) -> Result<(Value, i64), String> {
        let mut response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {}", without_url(e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!(
                "{url} answered {} (redirects are not followed)",
                response.status()
            ));
        }
        let keep = keep_seconds(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading {url}: {}", without_url(e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} is larger than 64 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        let document = serde_json::from_slice(&body).map_err(|_| format!("{url} is not JSON"))?;
        Ok((document, keep))
    }
}

/// The cache key of a trust's key source.
fn source_key(trust: &Trust) -> String {
    match &trust.keys {
        KeySource::Discovery => format!("discovery {}", trust.issuer),
        KeySource::Url(url) => format!("url {url}"),
        KeySource::File(path) => format!("file {}", path.display()),
    }
}

fn read_file(path: &std::path::Path) -> Result<Value, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("reading {shown}: {e}"))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{shown} is larger than 64 KiB"));
    }
    serde_json::from_slice(&bytes).map_err(|_| format!("{shown} is not JSON"))
}

/// A reqwest error's text without its URL (already named by the caller).
fn without_url(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else {
        e.without_url().to_string()
    }
}

/// How long a document may be kept under `cache_control`: its `max-age` (0 for `no-store`
/// or `no-cache`), at most an hour; five minutes when it says nothing.
fn keep_seconds(cache_control: Option<&str>) -> i64 {
    let Some(value) = cache_control else {
        return DEFAULT_KEEP_SECONDS;
    };
    let mut keep = DEFAULT_KEEP_SECONDS;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return 0;
        }
        if let Some(age) = lower.strip_prefix("max-age=") {
            keep = age
                .trim_matches('"')
                .parse::<i64>()
                .unwrap_or(DEFAULT_KEEP_SECONDS);
        }
    }
    keep.clamp(0, MAX_KEEP_SECONDS)
}

/// `exp`, `nbf` and `iat` at `now` (seconds), with leeway; at most 24 h of life.
fn check_times(claims: &Map<String, Value>, now: i64) -> Result<(), &'static str> {
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    let exp = time("exp").ok_or("the token has no exp")?;
    let iat = time("iat").ok_or("the token has no iat")?;
    if exp + LEEWAY_SECONDS < now {
        return Err("the token has expired: request a fresh one");
    }
    if iat - LEEWAY_SECONDS > now {
        return Err("the token was issued in the future (iat): check the clocks");
    }
    if time("nbf").is_some_and(|nbf| nbf - LEEWAY_SECONDS > now) {
        return Err("the token is not valid yet (nbf)");
    }
    if exp - iat > MAX_LIFETIME_SECONDS {
        return Err(
            "the token is valid for more than 24 hours; creddy accepts only short-lived tokens",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_control_decides_how_long_keys_are_kept() {
        assert_eq!(keep_seconds(None), 300);
        assert_eq!(keep_seconds(Some("public, max-age=60")), 60);
        assert_eq!(
            keep_seconds(Some("max-age=86400")),
            3_600,
            "at most an hour"
        );
        assert_eq!(keep_seconds(Some("no-store")), 0);
        assert_eq!(keep_seconds(Some("max-age=x")), 300);
    }

    #[test]
    fn times_hold_with_leeway_and_a_day_at_most() {
        let claims = |v: Value| v.as_object().cloned().unwrap_or_default();
        let now = 1_000_000;
        assert!(check_times(&claims(json!({"exp": now + 300, "iat": now})), now).is_ok());
        assert!(check_times(&claims(json!({"exp": now - 30, "iat": now - 330})), now).is_ok());
        for (token, why) in [
            (json!({"exp": now - 61, "iat": now - 400}), "expired"),
            (json!({"exp": now + 300, "iat": now + 61}), "future"),
            (
                json!({"exp": now + 300, "iat": now, "nbf": now + 61}),
                "not valid yet",
            ),
            (json!({"exp": now + 90_000, "iat": now}), "24 hours"),
            (json!({"iat": now}), "no exp"),
            (json!({"exp": now + 300}), "no iat"),
        ] {
            let refused = check_times(&claims(token), now).expect_err(why);
            assert!(refused.contains(why), "{refused}");
        }
    }

    #[test]
    fn only_signing_keys_of_the_accepted_kinds_are_read() {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": b64(&[1; 32])});
        assert_eq!(Key::from_jwk(&ed).map(|k| k.alg), Some(Alg::EdDsa));
        let mut wrong_alg = ed.clone();
        wrong_alg["alg"] = json!("RS256");
        assert!(
            Key::from_jwk(&wrong_alg).is_none(),
            "alg must fit the key type"
        );
        let mut encryption = ed.clone();
        encryption["use"] = json!("enc");
        assert!(Key::from_jwk(&encryption).is_none());
        let hmac = json!({"kty": "oct", "kid": "h", "k": b64(b"secret")});
        assert!(Key::from_jwk(&hmac).is_none(), "no symmetric keys");
        let short = json!({"kty": "EC", "crv": "P-256", "kid": "e", "x": b64(&[1; 31]), "y": b64(&[1; 32])});
        assert!(Key::from_jwk(&short).is_none());
    }

    #[test]
    fn headers_that_bring_their_own_keys_or_no_algorithm_are_refused() {
        let token = |header: Value| {
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(json!({"iss": "https://i.test"}).to_string()),
                URL_SAFE_NO_PAD.encode(b"sig")
            )
        };
        for (header, why) in [
            (json!({"alg": "none", "kid": "a"}), "alg 'none'"),
            (json!({"alg": "HS256", "kid": "a"}), "alg 'HS256'"),
            (json!({"kid": "a"}), "alg 'none'"),
            (
                json!({"alg": "RS256", "kid": "a", "jku": "https://evil.test/jwks"}),
                "'jku'",
            ),
            (
                json!({"alg": "RS256", "kid": "a", "x5u": "https://evil.test/cert"}),
                "'x5u'",
            ),
            (json!({"alg": "ES256", "kid": "a", "jwk": {}}), "'jwk'"),
            (json!({"alg": "ES256"}), "kid"),
        ] {
            match Unverified::read(&token(header)) {
                Err(Refusal::Header(text)) => assert!(text.contains(why), "{text}"),
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("accepted a header with {why}"),
            }
        }
        assert!(matches!(
            Unverified::read("a.b"),
            Err(Refusal::Malformed(_))
        ));
    }
}

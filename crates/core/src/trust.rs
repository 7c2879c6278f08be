//! Workload identity (§18): the `[[trust]]` tables that let a job's OIDC token (GitHub
//! Actions, GitLab CI, Kubernetes, any issuer) stand in for a creddy secret.
//!
//! A [`Trust`] names an issuer, where its keys come from, the audience its tokens must carry,
//! the claims they must match (`*` and `?` globs), the template that names the federated
//! agent, and what that agent may do. Everything is checked while the file is read, so a
//! bad issuer URL, glob or template field names its trust (and the TOML error its line).
//! The checks of a token's claims and the naming of its agent are pure and live here; the
//! signature and the key fetching are the server's.
//!
//! Deny by default: a trust must bind at least one claim with something more specific than
//! `*` (a GitHub trust bound to nothing would admit every repository on GitHub), and a claim
//! that is absent, not a string, number or boolean, or does not match refuses the token.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::Duration;
use crate::names::AgentName;
use crate::scope::Grants;

/// The most `[[trust]]` tables a file may hold.
pub const MAX_TRUSTS: usize = 64;
/// The most claims one trust may bind.
pub const MAX_CLAIMS: usize = 32;
/// The longest claim glob, claim value considered, or template.
const MAX_TEXT: usize = 256;
/// The default and the longest lifetime of the access token an exchange answers.
const DEFAULT_TOKEN_TTL: u64 = 900;
const MAX_TOKEN_TTL: u64 = 3_600;
/// The default cap on credentials vended to federated agents.
const DEFAULT_MAX_TTL: u64 = 3_600;
/// The audience a token must carry when the trust names none (the CLI asks for it).
pub const DEFAULT_AUDIENCE: &str = "creddy";

/// Where a trust's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
    Discovery,
    /// A JWKS URL.
    Url(String),
    /// A JWKS file (air-gapped), read when the keys are needed.
    File(PathBuf),
}

/// One `[[trust]]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Its label, `[a-z][a-z0-9-]{0,31}`.
    pub name: String,
    /// What the token's `iss` must equal.
    pub issuer: String,
    /// Where the issuer's keys come from.
    pub keys: KeySource,
    /// What the token's `aud` must contain.
    pub audience: String,
    /// The claims a token must match, by name.
    pub claims: BTreeMap<String, ClaimGlob>,
    /// How the federated agent is named.
    pub agent: AgentTemplate,
    /// What the federated agent may do.
    pub scopes: Grants,
    /// The lifetime of the access token an exchange answers, in seconds.
    pub token_ttl: u64,
    /// The cap on credentials vended to its agents, in seconds.
    pub max_ttl: u64,
}

/// Why a token's claims do not satisfy a trust: the claim and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMismatch {
    /// The claim's name.
    pub claim: String,
    /// What was found (absent, the wrong type, or the value that did not match).
    pub problem: String,
}

impl fmt::Display for ClaimMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "claim '{}' {}", self.claim, self.problem)
    }
}

impl Trust {
    /// The values of the bound claims when every one matches, or the first that does not.
    pub fn match_claims(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, String>, ClaimMismatch> {
        let mut values = BTreeMap::new();
        for (name, glob) in &self.claims {
            let value = claim_text(claims, name)?;
            if !glob.matches(&value) {
                return Err(ClaimMismatch {
                    claim: name.clone(),
                    problem: format!("is '{}', which does not match '{glob}'", shown(&value)),
                });
            }
            values.insert(name.clone(), value);
        }
        Ok(values)
    }

    /// The federated agent's name for a token with `claims` (already matched).
    pub fn agent_name(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<AgentName, ClaimMismatch> {
        self.agent.render(claims)
    }
}

/// A claim's value as text: strings as they are, numbers and booleans written out.
fn claim_text(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, ClaimMismatch> {
    let mismatch = |problem: &str| ClaimMismatch {
        claim: name.to_owned(),
        problem: problem.to_owned(),
    };
    let text = match claims.get(name) {
        None | Some(serde_json::Value::Null) => return Err(mismatch("is absent")),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::Bool(b)) => b.to_string(),
        Some(_) => return Err(mismatch("is not a string, number or boolean")),
    };
    if text.len() > MAX_TEXT {
        return Err(mismatch("is longer than 256 bytes"));
    }
    Ok(text)
}

/// A claim value shown in a message: control characters escaped.
fn shown(value: &str) -> String {
    value.chars().flat_map(char::escape_default).collect()
}

/// A glob over a claim's value: `*` any run of characters (`/` included), `?` exactly one;
/// case matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimGlob(String);

impl ClaimGlob {
    /// Checks a glob: 1 to 256 characters, no control characters.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() || input.len() > MAX_TEXT {
            return Err(format!(
                "invalid claim pattern '{}': use 1 to 256 characters",
                shown(input)
            ));
        }
        if input.chars().any(char::is_control) {
            return Err(format!(
                "invalid claim pattern '{}': control characters are not allowed",
                shown(input)
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = value.chars().collect();
        crate::policy::glob_match(&pattern, &text)
    }

    /// Whether it matches every value (only wildcards `*`).
    fn matches_anything(&self) -> bool {
        self.0.chars().all(|c| c == '*')
    }
}

impl fmt::Display for ClaimGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The federated agent's name over claims: `gh-{repository}`. Characters outside the agent
/// name grammar become `-`; leading ones that cannot start a name are dropped; the result is
/// cut to 63 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTemplate {
    text: String,
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Text(String),
    Claim(String),
}

impl AgentTemplate {
    /// Parses `input`; each `{field}` must be `sub` or one of `bound` (the trust's claims),
    /// so an agent is named only by what the trust checked or the token's subject.
    pub fn parse(input: &str, bound: &[&str]) -> Result<Self, String> {
        if input.is_empty() || input.len() > MAX_TEXT {
            return Err(format!(
                "invalid agent template '{}': use 1 to 256 characters",
                shown(input)
            ));
        }
        let mut parts = Vec::new();
        let mut rest = input;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!(
                    "invalid agent template '{}': a '{{' is not closed",
                    shown(input)
                )
            })?;
            let field = &after[..close];
            if field != "sub" && !bound.contains(&field) {
                return Err(format!(
                    "unknown template field '{{{}}}' in agent template '{}': use sub or a claim the trust binds ({})",
                    shown(field),
                    shown(input),
                    if bound.is_empty() {
                        "none".to_owned()
                    } else {
                        bound.join(", ")
                    }
                ));
            }
            parts.push(TemplatePart::Claim(field.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!(
                "invalid agent template '{}': a '}}' has no '{{'",
                shown(input)
            ));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_owned()));
        }
        Ok(Self {
            text: input.to_owned(),
            parts,
        })
    }

    /// The agent name for `claims`.
    pub fn render(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<AgentName, ClaimMismatch> {
        let mut raw = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(text) => raw.push_str(text),
                TemplatePart::Claim(name) => raw.push_str(&claim_text(claims, name)?),
            }
        }
        let name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .take(63)
            .collect();
        AgentName::parse(&name).map_err(|e| ClaimMismatch {
            claim: "agent".to_owned(),
            problem: format!("template '{}' gives no valid name: {e}", self.text),
        })
    }
}

impl fmt::Display for AgentTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A `[[trust]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    name: String,
    issuer: String,
    #[serde(default)]
    jwks_url: String,
    #[serde(default)]
    jwks_file: String,
    audience: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    agent: String,
    scopes: Vec<String>,
    token_ttl: Option<Duration>,
    max_ttl: Option<Duration>,
}

impl Trust {
    fn from_raw(raw: RawTrust) -> Result<Self, String> {
        let name = raw.name;
        if !crate::names::is_backend_segment(&name) {
            return Err(format!(
                "invalid trust name '{}': use a lowercase letter followed by up to 31 lowercase letters, digits or '-'",
                shown(&name)
            ));
        }
        let fail = |problem: String| format!("trust '{name}': {problem}");
        let issuer = check_url("issuer", &raw.issuer).map_err(fail)?;
        let keys = match (raw.jwks_url.is_empty(), raw.jwks_file.is_empty()) {
            (true, true) => KeySource::Discovery,
            (false, true) => KeySource::Url(check_url("jwks_url", &raw.jwks_url).map_err(fail)?),
            (true, false) => KeySource::File(PathBuf::from(&raw.jwks_file)),
            (false, false) => {
                return Err(fail(
                    "set jwks_url or jwks_file, not both (or neither, to discover the keys from the issuer)".into(),
                ));
            }
        };
        let audience = raw.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        if audience.is_empty() || audience.len() > MAX_TEXT {
            return Err(fail("audience: use 1 to 256 characters".into()));
        }
        let claims = bind_claims(raw.claims).map_err(fail)?;
        let bound: Vec<&str> = claims.keys().map(String::as_str).collect();
        let agent = AgentTemplate::parse(&raw.agent, &bound).map_err(fail)?;
        if raw.scopes.is_empty() {
            return Err(fail(
                "scopes: give at least one scope the agents may use".into(),
            ));
        }
        let scopes = Grants::parse(&raw.scopes).map_err(|e| fail(format!("scopes: {e}")))?;
        if scopes.as_slice().iter().any(crate::scope::Scope::is_admin) {
            return Err(fail(
                "scopes: admin scopes cannot be given to federated agents".into(),
            ));
        }
        let token_ttl = raw
            .token_ttl
            .map_or(DEFAULT_TOKEN_TTL, Duration::as_seconds);
        if token_ttl == 0 || token_ttl > MAX_TOKEN_TTL {
            return Err(fail("token_ttl: use a duration from 1s to 1h".into()));
        }
        let max_ttl = raw.max_ttl.map_or(DEFAULT_MAX_TTL, Duration::as_seconds);
        if max_ttl == 0 {
            return Err(fail("max_ttl: use a duration of at least 1s".into()));
        }
        Ok(Self {
            name,
            issuer,
            keys,
            audience,
            claims,
            agent,
            scopes,
            token_ttl,
            max_ttl,
        })
    }
}

/// The claim bindings, checked: at least one, at most [`MAX_CLAIMS`], none of the claims
/// creddy checks itself, at least one narrower than `*`.
fn bind_claims(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, ClaimGlob>, String> {
    if raw.len() > MAX_CLAIMS {
        return Err(format!("claims: at most {MAX_CLAIMS}"));
    }
    let mut claims = BTreeMap::new();
    for (name, pattern) in raw {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err(format!(
                "claims: invalid claim name '{}' (letters, digits, '_', '-', '.', ':')",
                shown(&name)
            ));
        }
        if matches!(name.as_str(), "iss" | "aud" | "exp" | "nbf" | "iat") {
            return Err(format!(
                "claims: '{name}' is checked by creddy itself (issuer, audience and times); bind the workload's own claims"
            ));
        }
        let glob = ClaimGlob::parse(&pattern).map_err(|e| format!("claims.{name}: {e}"))?;
        claims.insert(name, glob);
    }
    if claims.values().all(ClaimGlob::matches_anything) {
        return Err(
            "claims: bind at least one claim to something narrower than '*' (for GitHub, repository or repository_owner): without it, every workload of the issuer is admitted"
                .into(),
        );
    }
    Ok(claims)
}

/// Where [`check_url_allowing`] accepts plain `http://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// Only to a loopback host: keys and tokens fetched from it must not cross a network
    /// in clear.
    LoopbackOnly,
    /// To any host (creddy's own issuer URL, which the operator may serve in clear on a
    /// private network).
    Anywhere,
}

/// Checks an issuer or JWKS URL: `https://host[:port][/path]`, or `http://` to a loopback
/// host (127.0.0.0/8, `[::1]`, `localhost`); no user, query or fragment. Returns it without
/// a trailing `/`.
pub fn check_url(field: &str, input: &str) -> Result<String, String> {
    check_url_allowing(field, input, PlainHttp::LoopbackOnly)
}

/// [`check_url`], with plain `http://` accepted where `plain` says.
pub fn check_url_allowing(field: &str, input: &str, plain: PlainHttp) -> Result<String, String> {
    let bad = |why: &str| {
        let remedy = match plain {
            PlainHttp::LoopbackOnly => "use https://host/path (http:// only for a loopback host)",
            PlainHttp::Anywhere => "use https://host/path or http://host/path",
        };
        format!("{field} '{}' {why}: {remedy}", shown(input))
    };
    if input.len() > MAX_TEXT {
        return Err(bad("is longer than 256 characters"));
    }
    let (https, rest) = if let Some(rest) = input.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = input.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("is not an http(s) URL"));
    };
    if input
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@' | '\\'))
    {
        return Err(bad(
            "holds a user, query, fragment or a character URLs do not allow",
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = host_of(authority).ok_or_else(|| bad("has no valid host"))?;
    if !https && plain == PlainHttp::LoopbackOnly && !is_loopback(host) {
        return Err(bad("is plain http:// to a host that is not loopback"));
    }
    Ok(input.trim_end_matches('/').to_owned())
}

/// The host of `host[:port]` or `[v6][:port]`, when the port (if any) is a number.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    (port_ok && host_ok).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl<'de> Deserialize<'de> for Trust {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_raw(RawTrust::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The trusts of a file, in file order: names unique, at most [`MAX_TRUSTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSet(Vec<Trust>);

impl TrustSet {
    /// Checks the set.
    pub fn new(trusts: Vec<Trust>) -> Result<Self, String> {
        if trusts.len() > MAX_TRUSTS {
            return Err(format!("at most {MAX_TRUSTS} [[trust]] tables"));
        }
        for (i, trust) in trusts.iter().enumerate() {
            if trusts[..i].iter().any(|t| t.name == trust.name) {
                return Err(format!("two trusts are named '{}'", trust.name));
            }
        }
        Ok(Self(trusts))
    }

    /// Every trust, in file order.
    pub fn all(&self) -> &[Trust] {
        &self.0
    }

    /// The trusts of `issuer`, in file order.
    pub fn of_issuer<'a>(&'a self, issuer: &'a str) -> impl Iterator<Item = &'a Trust> + 'a {
        self.0.iter().filter(move |t| t.issuer == issuer)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    const GITHUB: &str = r#"
name = "github"
issuer = "https://token.actions.githubusercontent.com"
claims = { repository = "acme/widgets", ref = "refs/heads/*" }
agent = "gh-{repository}"
scopes = ["daytona"]
"#;

    fn parse(text: &str) -> Result<Trust, String> {
        toml::from_str::<Trust>(text).map_err(|e| e.to_string())
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn refused(text: &str, expected: &str) {
        let error = parse(text).expect_err(text);
        assert!(error.contains(expected), "{error}\nlacks: {expected}");
    }

    #[test]
    fn a_github_trust_reads_with_its_defaults() {
        let trust = parse(GITHUB).expect("valid");
        assert_eq!(trust.keys, KeySource::Discovery);
        assert_eq!(trust.audience, "creddy");
        assert_eq!((trust.token_ttl, trust.max_ttl), (900, 3_600));
        assert_eq!(trust.scopes.to_strings(), ["daytona"]);
    }

    #[test]
    fn every_bad_table_is_refused_with_its_remedy() {
        let with = |from: &str, to: &str| GITHUB.replace(from, to);
        refused(
            &with("https://token", "http://token"),
            "plain http:// to a host that is not loopback",
        );
        refused(
            &with("https://token", "ftp://token"),
            "is not an http(s) URL",
        );
        refused(
            &with(".com\"", ".com?x=1\""),
            "holds a user, query, fragment",
        );
        refused(
            &with("https://token", "https://me@token"),
            "holds a user, query, fragment",
        );
        refused(
            &with("name = \"github\"", "name = \"GitHub\""),
            "invalid trust name 'GitHub'",
        );
        refused(
            &format!("{GITHUB}jwks_url = \"https://x.test/jwks\"\njwks_file = \"/k.json\"\n"),
            "set jwks_url or jwks_file, not both",
        );
        refused(
            &format!("{GITHUB}jwks_url = \"http://keys.example.com/jwks\"\n"),
            "jwks_url 'http://keys.example.com/jwks'",
        );
        refused(
            &with("gh-{repository}", "gh-{workflow}"),
            "unknown template field '{workflow}'",
        );
        refused(&with("gh-{repository}", "gh-{repository"), "is not closed");
        refused(
            &with(
                "{ repository = \"acme/widgets\", ref = \"refs/heads/*\" }",
                "{ repository = \"*\" }",
            ),
            "bind at least one claim to something narrower than '*'",
        );
        refused(
            &with(
                "{ repository = \"acme/widgets\", ref = \"refs/heads/*\" }",
                "{}",
            ),
            "bind at least one claim",
        );
        refused(
            &with("ref = \"refs/heads/*\"", "aud = \"x\""),
            "'aud' is checked by creddy itself",
        );
        refused(&with("[\"daytona\"]", "[]"), "give at least one scope");
        refused(&with("[\"daytona\"]", "[\"admin:agents\"]"), "admin scopes");
        refused(&format!("{GITHUB}token_ttl = \"2h\"\n"), "token_ttl");
        refused(&format!("{GITHUB}colour = \"red\"\n"), "unknown field");
    }

    #[test]
    fn loopback_issuers_may_be_plain_http() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost/issuer/",
            "http://[::1]:9",
        ] {
            let checked = check_url("issuer", url).expect(url);
            assert!(!checked.ends_with('/'), "{checked}");
        }
        for url in [
            "http://10.0.0.1",
            "http://127.0.0.1:99999",
            "https://",
            "https://:80",
        ] {
            assert!(check_url("issuer", url).is_err(), "{url}");
        }
        // creddy's own issuer may be plain http:// anywhere; the rest of the grammar holds.
        let own = |url| check_url_allowing("issuer", url, PlainHttp::Anywhere);
        assert_eq!(
            own("http://creddy:8400/").as_deref(),
            Ok("http://creddy:8400")
        );
        for url in [
            "http://me@creddy",
            "ftp://creddy",
            "http://creddy?x",
            "http://",
        ] {
            let refused = own(url).expect_err(url);
            assert!(
                refused.ends_with("use https://host/path or http://host/path"),
                "{refused}"
            );
        }
    }

    #[test]
    fn claims_must_all_match_and_the_first_mismatch_is_named() {
        let trust = parse(GITHUB).expect("valid");
        let good = claims(json!({"repository": "acme/widgets", "ref": "refs/heads/feature/x"}));
        let values = trust.match_claims(&good).expect("matches");
        assert_eq!(values["repository"], "acme/widgets");
        let cases = [
            (
                json!({"repository": "acme/widgets", "ref": "refs/tags/v1"}),
                "ref",
                "does not match 'refs/heads/*'",
            ),
            (
                json!({"repository": "Acme/widgets", "ref": "refs/heads/main"}),
                "repository",
                "does not match",
            ),
            (json!({"ref": "refs/heads/main"}), "repository", "is absent"),
            (
                json!({"repository": ["acme/widgets"], "ref": "refs/heads/main"}),
                "repository",
                "not a string",
            ),
        ];
        for (token, claim, problem) in cases {
            let mismatch = trust.match_claims(&claims(token)).expect_err("refused");
            assert_eq!(mismatch.claim, claim);
            assert!(mismatch.problem.contains(problem), "{mismatch}");
        }
    }

    #[test]
    fn agent_names_keep_to_the_name_grammar() {
        let trust = parse(GITHUB).expect("valid");
        let name = trust
            .agent_name(&claims(json!({"repository": "acme/widgets"})))
            .expect("named");
        assert_eq!(name.as_str(), "gh-acme-widgets");
        let sub = AgentTemplate::parse("{sub}", &[]).expect("sub is always allowed");
        let long = "x".repeat(100);
        let named = sub
            .render(&claims(
                json!({"sub": format!("::system:serviceaccount:ci:{long}")}),
            ))
            .expect("named");
        assert!(
            named.as_str().starts_with("system-serviceaccount-ci-x"),
            "{named:?}"
        );
        assert_eq!(named.as_str().len(), 63);
        assert!(
            sub.render(&claims(json!({"sub": "///"}))).is_err(),
            "nothing left to name"
        );
    }

    #[test]
    fn trust_names_are_unique_in_a_set() {
        let trust = parse(GITHUB).expect("valid");
        assert!(TrustSet::new(vec![trust.clone(), trust.clone()]).is_err());
        let set = TrustSet::new(vec![trust]).expect("one");
        assert_eq!(
            set.of_issuer("https://token.actions.githubusercontent.com")
                .count(),
            1
        );
        assert_eq!(set.of_issuer("https://gitlab.com").count(), 0);
    }
}

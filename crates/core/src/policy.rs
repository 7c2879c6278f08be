//! Policies: which enrollments and amendments are approved without a person (§8).
//!
//! A [`PolicySet`] is read from the `[[policies]]` tables of the server's TOML file; every
//! field is checked while it is read, so a bad glob, duration or rate names its line. The
//! evaluation of a request (agent name, requested scopes) is pure:
//!
//! 1. the first policy, in file order, whose `match.name_pattern` matches the name governs;
//!    none → pending;
//! 2. a requested scope overlapping a `deny` pattern → rejected;
//! 3. no `allow` table → pending (a person decides);
//! 4. a requested scope not covered by `allow.scopes` → pending, naming it;
//! 5. `limits.max_agents` or `limits.rate` exhausted → pending, naming the limit (the caller
//!    supplies the counts from stored state, see [`Policy::limit_reached`]);
//! 6. otherwise approved by the policy.
//!
//! Deny by default: only step 6 approves, and it needs every requested scope covered.

use std::fmt;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::Duration;
use crate::scope::Scope;

/// The most policies a file may hold.
pub const MAX_POLICIES: usize = 256;

/// One `[[policies]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name, recorded on the agents it admits.
    pub name: String,
    /// Which agent names it governs.
    #[serde(rename = "match", default)]
    pub matcher: Match,
    /// What it approves by itself; absent: a person decides.
    pub allow: Option<Allow>,
    /// What it rejects.
    #[serde(default)]
    pub deny: Deny,
    /// Its limits.
    #[serde(default)]
    pub limits: Limits,
}

/// `match = { name_pattern }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// A glob over agent names; absent or `*`: every name.
    pub name_pattern: Option<Glob>,
}

/// `allow = { scopes, max_ttl, max_agent_lifetime }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Scope patterns it approves.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Caps every credential TTL of the agents it governs.
    pub max_ttl: Option<Duration>,
    /// Makes the agents it admits expire that long after approval.
    pub max_agent_lifetime: Option<Duration>,
}

/// `deny = { scopes }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    /// Scope patterns it rejects (checked before `allow`).
    #[serde(default)]
    pub scopes: Vec<Scope>,
}

/// `limits = { max_agents, rate }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The most live agents it may govern.
    pub max_agents: Option<u64>,
    /// The most automatic approvals per window.
    pub rate: Option<Rate>,
}

/// A glob over agent names: `*` any run of characters, `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Checks a pattern: agent-name characters plus `*` and `?`, at most 64 characters.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() || input.len() > 64 {
            return Err(format!(
                "invalid name pattern '{}': use 1 to 64 characters",
                input.escape_debug()
            ));
        }
        if let Some(bad) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?')))
        {
            return Err(format!(
                "invalid name pattern '{}': '{}' is not allowed (letters, digits, '.', '_', '-', and the wildcards '*' and '?')",
                input.escape_debug(),
                bad.escape_default()
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// Whether `name` matches, ignoring case (agent names are unique case-insensitively).
    pub fn matches(&self, name: &str) -> bool {
        let pattern: Vec<char> = self.0.to_ascii_lowercase().chars().collect();
        let text: Vec<char> = name.to_ascii_lowercase().chars().collect();
        glob_match(&pattern, &text)
    }
}

/// Iterative wildcard matching with one backtrack point (linear in practice).
pub(crate) fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `N/second|minute|hour|day` (plural accepted): at most `count` events per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window.
    pub count: u64,
    /// The window, in seconds.
    pub window_seconds: u64,
}

impl Rate {
    /// Parses `10/hour`, `120/minutes`, `1/day`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let fail = || {
            format!(
                "invalid rate '{}': use N/second, N/minute, N/hour or N/day, e.g. 10/hour",
                input.escape_debug()
            )
        };
        let (count, unit) = input.trim().split_once('/').ok_or_else(fail)?;
        let count: u64 = count.trim().parse().map_err(|_| fail())?;
        if count == 0 {
            return Err(format!(
                "invalid rate '{}': the count must be at least 1",
                input.escape_debug()
            ));
        }
        let window_seconds = match unit.trim().trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            _ => return Err(fail()),
        };
        Ok(Self {
            count,
            window_seconds,
        })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window_seconds {
            1 => "second",
            60 => "minute",
            3_600 => "hour",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// What a policy says about a request, before its limits are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Rejected, with the reason.
    Rejected(String),
    /// Left to a person, with the reason.
    Pending(String),
    /// Approved, if the policy's limits allow (see [`Policy::limit_reached`]).
    Approve,
}

/// The outcome of a request and the policy that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The governing policy, if any.
    pub policy: Option<&'a Policy>,
    /// What it says.
    pub verdict: Verdict,
}

impl Policy {
    /// Whether this policy governs agents of that name.
    pub fn governs(&self, name: &str) -> bool {
        self.matcher
            .name_pattern
            .as_ref()
            .is_none_or(|g| g.matches(name))
    }

    /// Steps 2 to 4 of the evaluation for `requested` scopes.
    pub fn judge(&self, requested: &[Scope]) -> Verdict {
        for scope in requested {
            if self.deny.scopes.iter().any(|d| d.overlaps(scope)) {
                return Verdict::Rejected(format!("denied by policy '{}': {scope}", self.name));
            }
        }
        let Some(allow) = &self.allow else {
            return Verdict::Pending(format!("policy '{}' requires manual approval", self.name));
        };
        if let Some(scope) = requested
            .iter()
            .find(|s| !allow.scopes.iter().any(|a| a.covers(s)))
        {
            return Verdict::Pending(format!(
                "scope {scope} is not allowed by policy '{}'; an admin decides",
                self.name
            ));
        }
        Verdict::Approve
    }

    /// Step 5: the reason the policy may not approve one more, given the live agents it
    /// governs and its automatic approvals within the rate window; `None` when it may.
    pub fn limit_reached(&self, live_agents: u64, recent_approvals: u64) -> Option<String> {
        if let Some(max) = self.limits.max_agents
            && live_agents >= max
        {
            return Some(format!(
                "policy '{}' reached limits.max_agents ({max}); an admin decides",
                self.name
            ));
        }
        if let Some(rate) = self.limits.rate
            && recent_approvals >= rate.count
        {
            return Some(format!(
                "policy '{}' reached limits.rate ({rate}); an admin decides",
                self.name
            ));
        }
        None
    }

    /// `allow.max_ttl` in seconds.
    pub fn max_ttl(&self) -> Option<u64> {
        self.allow
            .as_ref()
            .and_then(|a| a.max_ttl)
            .map(Duration::as_seconds)
    }

    /// `allow.max_agent_lifetime`.
    pub fn max_agent_lifetime(&self) -> Option<Duration> {
        self.allow.as_ref().and_then(|a| a.max_agent_lifetime)
    }
}

/// The policies of the server, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    policies: Vec<Policy>,
    /// SHA-256 (hex) of the policies' canonical text, to show drift between nodes.
    digest: String,
}

impl PolicySet {
    /// Checks what the file's tables cannot express: at most [`MAX_POLICIES`], non-empty
    /// unique names, admin scopes never approved by a policy.
    pub fn new(policies: Vec<Policy>) -> Result<Self, String> {
        if policies.len() > MAX_POLICIES {
            return Err(format!(
                "{} policies is more than the {MAX_POLICIES} allowed",
                policies.len()
            ));
        }
        for (i, policy) in policies.iter().enumerate() {
            let at = format!("policies[{i}]");
            if policy.name.trim().is_empty() || policy.name.len() > 64 {
                return Err(format!(
                    "{at}.name: give each policy a name of 1 to 64 characters"
                ));
            }
            if policies[..i].iter().any(|p| p.name == policy.name) {
                return Err(format!(
                    "{at}.name: a second policy is named '{}'; names must be unique",
                    policy.name
                ));
            }
            if let Some(admin) = policy
                .allow
                .iter()
                .flat_map(|a| &a.scopes)
                .find(|s| s.is_admin())
            {
                return Err(format!(
                    "policy '{}': allow.scopes: '{admin}' is an admin scope; only an admin grants those",
                    policy.name
                ));
            }
        }
        let digest = hex::encode(Sha256::digest(format!("{policies:?}").as_bytes()));
        Ok(Self { policies, digest })
    }

    /// The policies, in order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The policy of that name.
    pub fn named(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The SHA-256 of the set, for `policy.loaded`.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Steps 1 to 4 for an agent `name` requesting `requested`.
    pub fn evaluate(&self, name: &str, requested: &[Scope]) -> Decision<'_> {
        match self.policies.iter().find(|p| p.governs(name)) {
            None => Decision {
                policy: None,
                verdict: Verdict::Pending("no policy matches; an admin decides".into()),
            },
            Some(policy) => Decision {
                policy: Some(policy),
                verdict: policy.judge(requested),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        policies: Vec<Policy>,
    }

    fn set(text: &str) -> PolicySet {
        let file: File = toml::from_str(text).expect("the policies are valid TOML");
        PolicySet::new(file.policies).expect("PolicySet is created")
    }

    fn scopes(items: &[&str]) -> Vec<Scope> {
        items
            .iter()
            .map(|s| Scope::parse(s).expect("the text parses"))
            .collect()
    }

    const SPEC_EXAMPLE: &str = r#"
[[policies]]
name = "ci-runners"
match  = { name_pattern = "ci-*" }
allow  = { scopes = ["daytona:workspaces", "daytona:org:myorg"], max_ttl = "1h", max_agent_lifetime = "7d" }
deny   = { scopes = ["daytona:org:prod"] }
limits = { max_agents = 50, rate = "10/hour" }

[[policies]]
name = "developer-laptops"
match = { name_pattern = "dev-*" }
allow = { scopes = ["daytona", "github:*"], max_ttl = "8h" }
deny  = { scopes = ["github:*:admin"] }

[[policies]]
name = "audit-unknown"
match = { name_pattern = "*" }
"#;

    #[test]
    fn the_first_matching_policy_governs_and_deny_comes_before_allow() {
        let policies = set(SPEC_EXAMPLE);
        let ci = policies.evaluate("ci-7", &scopes(&["daytona:workspaces"]));
        assert_eq!(ci.policy.map(|p| p.name.as_str()), Some("ci-runners"));
        assert_eq!(ci.verdict, Verdict::Approve);
        let denied =
            policies.evaluate("CI-8", &scopes(&["daytona:workspaces", "daytona:org:prod"]));
        assert_eq!(
            denied.verdict,
            Verdict::Rejected("denied by policy 'ci-runners': daytona:org:prod".into())
        );
        let wide = policies.evaluate("ci-9", &scopes(&["daytona"]));
        assert!(
            matches!(wide.verdict, Verdict::Rejected(_)),
            "the plain scope overlaps the denied organisation: {wide:?}"
        );
        let uncovered = policies.evaluate("ci-9", &scopes(&["github:repo"]));
        assert!(
            matches!(&uncovered.verdict, Verdict::Pending(r) if r.contains("scope github:repo is not allowed"))
        );
        let dev = policies.evaluate("dev-ann", &scopes(&["github:repo:admin"]));
        assert!(matches!(dev.verdict, Verdict::Rejected(_)), "{dev:?}");
        let other = policies.evaluate("laptop", &scopes(&["daytona"]));
        assert_eq!(other.policy.map(|p| p.name.as_str()), Some("audit-unknown"));
        assert_eq!(
            other.verdict,
            Verdict::Pending("policy 'audit-unknown' requires manual approval".into())
        );
        assert_eq!(
            PolicySet::default()
                .evaluate("x", &scopes(&["daytona"]))
                .verdict,
            Verdict::Pending("no policy matches; an admin decides".into())
        );
    }

    #[test]
    fn limits_ttls_and_lifetimes_come_from_the_governing_policy() {
        let policies = set(SPEC_EXAMPLE);
        let ci = &policies.policies()[0];
        assert_eq!(ci.max_ttl(), Some(3_600));
        assert_eq!(
            ci.max_agent_lifetime().map(Duration::as_seconds),
            Some(7 * 86_400)
        );
        assert_eq!(ci.limit_reached(49, 9), None);
        assert!(
            ci.limit_reached(50, 0)
                .is_some_and(|r| r.contains("max_agents (50)"))
        );
        assert!(
            ci.limit_reached(0, 10)
                .is_some_and(|r| r.contains("limits.rate (10/hour)"))
        );
        assert_eq!(
            policies
                .named("developer-laptops")
                .and_then(Policy::max_ttl),
            Some(28_800)
        );
        assert_eq!(policies.digest().len(), 64);
    }

    #[test]
    fn globs_match_case_insensitively_with_star_and_question_mark() {
        let g = |p: &str| Glob::parse(p).expect("the text parses");
        assert!(g("ci-*").matches("ci-"));
        assert!(g("ci-*").matches("CI-runner-1"));
        assert!(!g("ci-*").matches("xci-1"));
        assert!(g("*-prod").matches("db-prod"));
        assert!(g("a?c").matches("abc") && !g("a?c").matches("ac"));
        assert!(g("*a*b*").matches("xxaxxbxx") && !g("*a*b*").matches("ba"));
        assert!(Glob::parse("ci/*").is_err());
        assert!(Glob::parse("").is_err());
    }

    #[test]
    fn rates_take_every_unit_and_plurals() {
        assert_eq!(
            Rate::parse("10/hour"),
            Ok(Rate {
                count: 10,
                window_seconds: 3_600
            })
        );
        assert_eq!(Rate::parse("2/minutes").map(|r| r.window_seconds), Ok(60));
        assert_eq!(Rate::parse("1/day").map(|r| r.window_seconds), Ok(86_400));
        assert_eq!(Rate::parse("5/seconds").map(|r| r.window_seconds), Ok(1));
        for bad in ["10", "x/hour", "0/hour", "10/week", "-1/day"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err = |text: &str| match toml::from_str::<File>(text) {
            Err(e) => e.to_string(),
            Ok(f) => PolicySet::new(f.policies).err().unwrap_or_default(),
        };
        assert!(
            err("[[policies]]\nname = \"a\"\nallow = { max_ttl = \"7x\" }\n").contains("line 3")
        );
        assert!(
            err("[[policies]]\nname = \"a\"\nmatch = { name_pattern = \"a/b\" }\n")
                .contains("not allowed")
        );
        assert!(
            err("[[policies]]\nname = \"a\"\nlimits = { rate = \"9/week\" }\n")
                .contains("invalid rate")
        );
        assert!(err("[[policies]]\nname = \"a\"\nalow = {}\n").contains("unknown field"));
        assert!(err("[[policies]]\nname = \"a\"\n[[policies]]\nname = \"a\"\n").contains("unique"));
        assert!(
            err("[[policies]]\nname = \"a\"\nallow = { scopes = [\"admin:agents:read\"] }\n")
                .contains("admin scope")
        );
        assert_eq!(
            err("[[policies]]\nname = \"a\"\nallow = { max_agent_lifetime = \"7d\" }\n"),
            ""
        );
    }
}

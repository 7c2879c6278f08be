//! A plugin's route policy for proxy mode (§20): which proxied calls a lease may make, given
//! the permissions its credential carries. The plugin declares it (in `hello`), creddy
//! enforces it on every call before anything reaches the upstream: another plugin can serve
//! proxy mode by declaring its own.
//!
//! A policy is a list of paths never proxied, whatever the lease (key, organisation, user and
//! admin routes), then rules in order; the first rule whose methods and path match decides:
//! allowed to any lease, or only to one whose credential holds the rule's permission. No
//! matching rule: refused. Paths are matched on segment boundaries (`/sandbox` matches
//! `/sandbox` and `/sandbox/x`, not `/sandboxes`); `*` matches every path.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteRule {
    /// Methods (`GET`, `POST`, …), or `*` for any.
    pub methods: Vec<String>,
    /// A path prefix matched on segment boundaries, or `*`.
    pub path: String,
    /// The permission the lease's credential must hold; none: any lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
}

/// A plugin's route policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RoutePolicy {
    /// Path prefixes never proxied.
    pub never: Vec<String>,
    /// The rules, first match wins.
    pub rules: Vec<RouteRule>,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRefusal {
    /// The path is never proxied.
    Never,
    /// The lease's credential lacks this permission.
    Requires(String),
    /// No rule allows the call.
    NoRule,
}

impl std::fmt::Display for RouteRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Never => f.write_str("this route is never proxied"),
            Self::Requires(permission) => {
                write!(
                    f,
                    "this call needs the permission '{permission}', which the lease does not hold"
                )
            }
            Self::NoRule => f.write_str("no rule of the backend's route policy allows this call"),
        }
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    if prefix == "*" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

impl RoutePolicy {
    /// Decides `method path` (the path relative to the backend's base, with a leading `/`)
    /// for a lease whose credential holds `permissions`.
    pub fn decide(
        &self,
        method: &str,
        path: &str,
        permissions: &[&str],
    ) -> Result<(), RouteRefusal> {
        if self.never.iter().any(|prefix| under(path, prefix)) {
            return Err(RouteRefusal::Never);
        }
        let rule = self.rules.iter().find(|rule| {
            rule.methods
                .iter()
                .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
                && under(path, &rule.path)
        });
        match rule {
            None => Err(RouteRefusal::NoRule),
            Some(RouteRule { requires: None, .. }) => Ok(()),
            Some(RouteRule {
                requires: Some(permission),
                ..
            }) if permissions.contains(&permission.as_str()) => Ok(()),
            Some(RouteRule {
                requires: Some(permission),
                ..
            }) => Err(RouteRefusal::Requires(permission.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], path: &str, requires: Option<&str>) -> RouteRule {
        RouteRule {
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            path: path.into(),
            requires: requires.map(str::to_owned),
        }
    }

    #[test]
    fn never_wins_then_the_first_matching_rule_decides_and_nothing_else_passes() {
        let policy = RoutePolicy {
            never: vec!["/api-keys".into()],
            rules: vec![
                rule(&["DELETE"], "/sandbox", Some("delete:sandboxes")),
                rule(&["GET", "HEAD"], "*", None),
                rule(&["*"], "/sandbox", Some("write:sandboxes")),
            ],
        };
        let write = ["write:sandboxes"];
        assert_eq!(policy.decide("GET", "/sandbox/x", &[]), Ok(()));
        assert_eq!(
            policy.decide("GET", "/api-keys", &write),
            Err(RouteRefusal::Never)
        );
        assert_eq!(
            policy.decide("GET", "/api-keys/k", &write),
            Err(RouteRefusal::Never)
        );
        assert_eq!(policy.decide("post", "/sandbox", &write), Ok(()));
        assert_eq!(
            policy.decide("POST", "/sandbox/x/start", &[]),
            Err(RouteRefusal::Requires("write:sandboxes".into()))
        );
        assert_eq!(
            policy.decide("DELETE", "/sandbox/x", &write),
            Err(RouteRefusal::Requires("delete:sandboxes".into())),
            "the first matching rule decides"
        );
        assert_eq!(
            policy.decide("POST", "/sandboxes", &write),
            Err(RouteRefusal::NoRule),
            "prefixes match on segment boundaries"
        );
        assert_eq!(
            policy.decide("POST", "/volumes", &write),
            Err(RouteRefusal::NoRule)
        );
    }
}

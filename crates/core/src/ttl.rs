//! TTL rules: which lifetimes a credential may have.
//!
//! For a request by agent A on backend B:
//! - **min** = the plugin's `min_ttl`, else the server's `ttl.min`;
//! - **max** = the smallest of the plugin's `max_ttl`, the backend's (or server's) `ttl.max`,
//!   the `max_ttl` of A's policy, and A's remaining lifetime;
//! - **default** = the plugin's `default_ttl`, else the server's `ttl.default`, then raised
//!   to min or lowered to max.
//!
//! A TTL outside [min, max] is refused with a message naming the binding limit; nothing is
//! clamped silently (the original silently turned bad TTLs into 10 minutes).

use crate::Duration;

/// Where a limit comes from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// The plugin's constraints.
    Plugin,
    /// The server's configuration (`ttl.*` or `ttl.backends.<name>.*`).
    Server,
    /// The named policy's `max_ttl`.
    Policy(String),
    /// The agent's remaining lifetime.
    AgentLifetime,
    /// The `max_ttl` of the trust that admitted a federated agent (§18).
    Trust(String),
}

impl std::fmt::Display for LimitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitSource::Plugin => f.write_str("plugin limit"),
            LimitSource::Server => f.write_str("server limit"),
            LimitSource::Policy(name) => write!(f, "policy '{name}'"),
            LimitSource::AgentLifetime => f.write_str("the agent's remaining lifetime"),
            LimitSource::Trust(name) => write!(f, "trust '{name}' max_ttl"),
        }
    }
}

/// The inputs of the rule, in seconds.
#[derive(Debug, Clone, Default)]
pub struct TtlInputs {
    /// Plugin `min_ttl`.
    pub plugin_min: Option<u64>,
    /// Plugin `max_ttl`.
    pub plugin_max: Option<u64>,
    /// Plugin `default_ttl`.
    pub plugin_default: Option<u64>,
    /// Server `ttl.min`.
    pub server_min: u64,
    /// Server `ttl.max`, or the backend's override.
    pub server_max: u64,
    /// Server `ttl.default`.
    pub server_default: u64,
    /// The governing policy's name and `max_ttl`.
    pub policy_max: Option<(String, u64)>,
    /// Seconds until the agent expires.
    pub agent_remaining: Option<u64>,
    /// The admitting trust's name and `max_ttl`, for a federated agent.
    pub trust_max: Option<(String, u64)>,
}

/// The allowed range for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlRange {
    /// Shortest allowed.
    pub min: u64,
    /// Longest allowed.
    pub max: u64,
    /// What binds the maximum.
    pub max_source: LimitSource,
    /// What binds the minimum.
    pub min_source: LimitSource,
    /// Used when no TTL is asked for.
    pub default: u64,
}

/// A TTL that cannot be granted, with a message that names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TtlError(String);

fn show(seconds: u64) -> String {
    Duration::from_seconds(seconds).map_or_else(|| format!("{seconds}s"), |d| d.to_string())
}

impl TtlInputs {
    /// Computes the range.
    pub fn range(&self) -> TtlRange {
        let (min, min_source) = match self.plugin_min {
            Some(m) => (m, LimitSource::Plugin),
            None => (self.server_min, LimitSource::Server),
        };
        // On a tie the first source named wins, so the plugin is blamed before the server.
        let mut candidates = vec![];
        candidates.extend(self.plugin_max.map(|m| (m, LimitSource::Plugin)));
        candidates.push((self.server_max, LimitSource::Server));
        candidates.extend(
            self.policy_max
                .clone()
                .map(|(name, m)| (m, LimitSource::Policy(name))),
        );
        candidates.extend(
            self.trust_max
                .clone()
                .map(|(name, m)| (m, LimitSource::Trust(name))),
        );
        candidates.extend(
            self.agent_remaining
                .map(|m| (m, LimitSource::AgentLifetime)),
        );
        let mut max = candidates.remove(0);
        for candidate in candidates {
            if candidate.0 < max.0 {
                max = candidate;
            }
        }
        let default = self
            .plugin_default
            .unwrap_or(self.server_default)
            .max(min)
            .min(max.0);
        TtlRange {
            min,
            max: max.0,
            max_source: max.1,
            min_source,
            default,
        }
    }
}

impl TtlRange {
    /// The TTL for a request: the default when none is asked for, the requested one when it
    /// is within range, otherwise an error naming the binding limit.
    pub fn choose(&self, requested: Option<Duration>, backend: &str) -> Result<u64, TtlError> {
        if self.max < self.min {
            return Err(TtlError(format!(
                "no TTL is possible for backend '{backend}': the maximum {} ({}) is below the minimum {} ({})",
                show(self.max),
                self.max_source,
                show(self.min),
                self.min_source
            )));
        }
        let Some(requested) = requested else {
            return Ok(self.default);
        };
        let ttl = requested.as_seconds();
        if ttl > self.max {
            return Err(TtlError(format!(
                "requested TTL {requested} exceeds the maximum {} for backend '{backend}' ({}); allowed: {} to {}",
                show(self.max),
                self.max_source,
                show(self.min),
                show(self.max)
            )));
        }
        if ttl < self.min {
            return Err(TtlError(format!(
                "requested TTL {requested} is below the minimum {} for backend '{backend}' ({}); allowed: {} to {}",
                show(self.min),
                self.min_source,
                show(self.min),
                show(self.max)
            )));
        }
        Ok(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daytona() -> TtlInputs {
        TtlInputs {
            plugin_min: Some(60),
            plugin_max: Some(86_400),
            plugin_default: Some(600),
            server_min: 60,
            server_max: 86_400,
            server_default: 600,
            policy_max: None,
            agent_remaining: None,
            trust_max: None,
        }
    }

    fn d(s: &str) -> Option<Duration> {
        Duration::parse(s).ok()
    }

    #[test]
    fn the_specification_examples() {
        let range = daytona().range();
        assert_eq!(range.choose(None, "daytona"), Ok(600));
        assert_eq!(range.choose(d("1h"), "daytona"), Ok(3600));
        let short = range
            .choose(d("30s"), "daytona")
            .expect_err("too short")
            .to_string();
        assert!(
            short.contains("below the minimum 1m") && short.contains("allowed: 1m to 1d"),
            "{short}"
        );
        let long = range
            .choose(d("2d"), "daytona")
            .expect_err("too long")
            .to_string();
        assert_eq!(
            long,
            "requested TTL 2d exceeds the maximum 1d for backend 'daytona' (plugin limit); allowed: 1m to 1d"
        );
    }

    #[test]
    fn a_trust_caps_its_federated_agents() {
        let mut inputs = daytona();
        inputs.policy_max = Some(("ci-runners".into(), 7_200));
        inputs.trust_max = Some(("github".into(), 1_800));
        let err = inputs
            .range()
            .choose(d("1h"), "daytona")
            .expect_err("over the trust's max_ttl")
            .to_string();
        assert!(
            err.contains("maximum 30m") && err.contains("(trust 'github' max_ttl)"),
            "{err}"
        );
        assert_eq!(inputs.range().choose(d("30m"), "daytona"), Ok(1_800));
    }

    #[test]
    fn a_policy_narrows_the_maximum_and_the_default() {
        let mut inputs = daytona();
        inputs.policy_max = Some(("ci-runners".into(), 3600));
        let range = inputs.range();
        let err = range
            .choose(d("2h"), "daytona")
            .expect_err("policy")
            .to_string();
        assert!(
            err.contains("maximum 1h") && err.contains("(policy 'ci-runners')"),
            "{err}"
        );
        assert_eq!(range.choose(None, "daytona"), Ok(600));
        inputs.policy_max = Some(("tight".into(), 300));
        assert_eq!(
            inputs.range().choose(None, "daytona"),
            Ok(300),
            "default lowered to max"
        );
    }

    #[test]
    fn the_agent_lifetime_and_server_limits_apply() {
        let mut inputs = daytona();
        inputs.plugin_max = None;
        inputs.server_max = 8 * 3600;
        assert_eq!(inputs.range().max_source, LimitSource::Server);
        inputs.agent_remaining = Some(120);
        let err = inputs
            .range()
            .choose(d("10m"), "b")
            .expect_err("lifetime")
            .to_string();
        assert!(err.contains("remaining lifetime"), "{err}");
        inputs.agent_remaining = Some(30);
        let err = inputs
            .range()
            .choose(None, "b")
            .expect_err("impossible")
            .to_string();
        assert!(err.contains("no TTL is possible"), "{err}");
    }
}

//! Name rules for agents and backends.
//!
//! Agent names match `^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$` and are unique case-insensitively;
//! backend names match `^[a-z][a-z0-9-]{0,31}$` and `admin` is reserved. The original took
//! any name, and a `/` in one made it impossible to delete.

use std::fmt;

use serde::{Serialize, Serializer};

/// A validated agent name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} name '{shown}': {problem}")]
pub struct NameError {
    what: &'static str,
    shown: String,
    problem: String,
}

impl AgentName {
    /// Validates an agent name.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let fail = |problem: String| NameError {
            what: "agent",
            shown: shown(input),
            problem,
        };
        let first = input
            .chars()
            .next()
            .ok_or_else(|| fail("it is empty".into()))?;
        if input.len() > 63 {
            return Err(fail("it is longer than 63 characters".into()));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(fail("it must start with a letter or digit".into()));
        }
        if let Some(bad) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(fail(format!(
                "'{}' is not allowed (use letters, digits, '.', '_' and '-')",
                bad.escape_default()
            )));
        }
        Ok(Self(input.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which names are unique: the name in lower case.
    pub fn unique_key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AgentName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Checks a backend name: a lowercase letter then up to 31 of `[a-z0-9-]`, not `admin`.
pub fn check_backend_name(input: &str) -> Result<(), NameError> {
    let fail = |problem: &str| NameError {
        what: "backend",
        shown: shown(input),
        problem: problem.to_owned(),
    };
    if !is_backend_segment(input) {
        return Err(fail(
            "use a lowercase letter followed by up to 31 lowercase letters, digits or '-'",
        ));
    }
    if input == "admin" {
        return Err(fail("'admin' is reserved"));
    }
    Ok(())
}

/// True when `s` has the shape of a backend name (`admin` included).
pub(crate) fn is_backend_segment(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A name cut to a printable length for error messages, with control characters escaped.
fn shown(input: &str) -> String {
    let cut: String = input.chars().take(64).collect();
    let escaped = cut.escape_debug().to_string();
    if input.chars().count() > 64 {
        format!("{escaped}…")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_follow_the_grammar() {
        for good in ["ci-agent", "A", "9lives", "a.b_c-d", &"x".repeat(63)] {
            assert!(AgentName::parse(good).is_ok(), "{good}");
        }
        let bad = [
            ("", "empty"),
            ("-lead", "start with"),
            (".hidden", "start with"),
            ("a/b", "'/' is not allowed"),
            ("a b", "' ' is not allowed"),
            ("naïve", "is not allowed"),
            (&"x".repeat(64), "longer than 63"),
            ("a\nb", "'\\n' is not allowed"),
        ];
        for (name, reason) in bad {
            let err = AgentName::parse(name).expect_err(name).to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
    }

    #[test]
    fn uniqueness_ignores_case() {
        let a = AgentName::parse("CI-Agent").expect("valid");
        assert_eq!(a.unique_key(), "ci-agent");
        assert_eq!(a.as_str(), "CI-Agent");
    }

    #[test]
    fn backend_names_follow_the_grammar() {
        assert!(check_backend_name("daytona").is_ok());
        assert!(check_backend_name("daytona-prod2").is_ok());
        for bad in ["", "Daytona", "1abc", "a_b", "admin", &"a".repeat(33)] {
            assert!(check_backend_name(bad).is_err(), "{bad}");
        }
    }
}

//! Scopes: the permission strings agents hold and request, and the one matcher.
//!
//! Grammar (no whitespace, no commas, at most 256 characters):
//!
//! ```text
//! scope    = "*" / backend *( ":" segment )
//! backend  = lowercase letter, then up to 31 of [a-z0-9-]   ; a backend name, or "admin"
//! segment  = 1*128 of [A-Za-z0-9._/@*?-]
//! ```
//!
//! Admin scopes are a separate namespace (`admin:<resource>:<read|write>`, `admin:*`,
//! `admin:<resource>:*`); `*` never covers them. The original had three matchers that
//! disagreed; this module is the only one, used for enrollment, policies, admin checks, vends
//! and OIDC narrowing.
//!
//! **Invariant: deny by default.** A requested scope is allowed only when some grant covers it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::is_backend_segment;

/// The longest scope accepted.
pub const MAX_SCOPE_LEN: usize = 256;
/// The longest segment accepted.
pub const MAX_SEGMENT_LEN: usize = 128;
/// The resources of the admin namespace.
pub const ADMIN_RESOURCES: [&str; 8] = [
    "agents",
    "backends",
    "tokens",
    "audit",
    "enrollments",
    "plugins",
    "keys",
    "metrics",
];

/// A scope that passed the grammar.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

/// Why a scope was refused; the message says what is wrong and how a valid one looks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope '{shown}': {problem}")]
pub struct ScopeError {
    shown: String,
    problem: String,
}

impl Scope {
    /// Checks `input` against the grammar.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let fail = |problem: String| ScopeError {
            shown: input
                .chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string(),
            problem,
        };
        if input.is_empty() {
            return Err(fail("it is empty".into()));
        }
        if input.len() > MAX_SCOPE_LEN {
            return Err(fail(format!(
                "it is longer than {MAX_SCOPE_LEN} characters"
            )));
        }
        if input == "*" {
            return Ok(Self(input.to_owned()));
        }
        let mut segments = input.split(':');
        let backend = segments.next().unwrap_or_default();
        if !is_backend_segment(backend) {
            return Err(fail(format!(
                "'{}' is not a backend name (a lowercase letter, then up to 31 of a-z, 0-9 and '-'), e.g. 'daytona' or 'daytona:workspaces:read'",
                backend.escape_debug()
            )));
        }
        for segment in segments {
            check_segment(segment).map_err(fail)?;
        }
        if backend == "admin" {
            check_admin(input).map_err(fail)?;
        }
        Ok(Self(input.to_owned()))
    }

    /// The scope text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment: a backend name, `admin`, or `*`.
    pub fn backend(&self) -> &str {
        self.segments().next().unwrap_or_default()
    }

    /// True for scopes of the admin namespace.
    pub fn is_admin(&self) -> bool {
        self.backend() == "admin"
    }

    /// The `:`-separated segments.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.0.split(':')
    }

    /// Whether this scope, read as a grant pattern, covers `requested`.
    pub fn covers(&self, requested: &Scope) -> bool {
        covers(&self.0, &requested.0)
    }

    /// Whether this scope, read as a deny pattern, blocks `requested`: the pattern covers the
    /// request, or the request covers the pattern read as a scope.
    pub fn overlaps(&self, requested: &Scope) -> bool {
        covers(&self.0, &requested.0) || covers(&requested.0, &self.0)
    }
}

fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it has an empty segment (two ':' in a row, or a trailing ':')".into());
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(format!(
            "a segment is longer than {MAX_SEGMENT_LEN} characters"
        ));
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._/@*?-".contains(*c)))
    {
        Some(bad) => Err(format!(
            "'{}' is not allowed in a segment (use letters, digits and . _ / @ * ? -)",
            bad.escape_debug()
        )),
        None => Ok(()),
    }
}

fn check_admin(input: &str) -> Result<(), String> {
    let parts: Vec<&str> = input.split(':').collect();
    let valid = match parts.as_slice() {
        ["admin", "*"] => true,
        ["admin", resource, action] => {
            ADMIN_RESOURCES.contains(resource) && matches!(*action, "read" | "write" | "*")
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "admin scopes have the form admin:<resource>:<read|write|*> or admin:*, with resource one of {}",
            ADMIN_RESOURCES.join(", ")
        ))
    }
}

/// Rules 1 to 3 of the specification.
fn covers(pattern: &str, requested: &str) -> bool {
    if pattern == "*" {
        return requested.split(':').next() != Some("admin");
    }
    let p: Vec<&str> = pattern.split(':').collect();
    let s: Vec<&str> = requested.split(':').collect();
    let (fixed, _) = match p.split_last() {
        Some((&"*", rest)) if !rest.is_empty() => (rest, true),
        _ => (p.as_slice(), false),
    };
    s.len() >= fixed.len()
        && fixed
            .iter()
            .zip(&s)
            .all(|(pat, seg)| segment_matches(pat, seg))
}

/// Glob match within one segment: `*` any run, `?` exactly one character. A `*` or `?` in the
/// requested segment is an ordinary character that only a `*` in the pattern can cover.
fn segment_matches(pattern: &str, segment: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = segment.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, si));
                pi += 1;
            }
            Some('?') if s[si] != '*' && s[si] != '?' => {
                pi += 1;
                si += 1;
            }
            Some(&c) if c != '?' && c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pi = star + 1;
                    si = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The set of scopes an agent holds: sorted and free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grants(Vec<Scope>);

impl Grants {
    /// Parses, sorts and de-duplicates a list of scopes; the first invalid one is reported.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, ScopeError> {
        let scopes = items
            .iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_scopes(scopes))
    }

    /// Builds a set from already validated scopes.
    pub fn from_scopes(mut scopes: Vec<Scope>) -> Self {
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    /// True when some grant covers `requested`. With no grants, nothing is covered.
    pub fn covers(&self, requested: &Scope) -> bool {
        self.0.iter().any(|grant| grant.covers(requested))
    }

    /// The scopes in order.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// The scopes as plain strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }

    /// True when there are no grants.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).expect("the text parses")
    }

    /// The table of the specification, §5.
    #[test]
    fn specification_table() {
        let table = [
            ("daytona", "daytona", true),
            ("daytona", "daytona:workspaces:read", true),
            ("daytona", "daytona:org:myorg", true),
            ("daytona:workspaces", "daytona", false),
            ("daytona:workspaces", "daytona:workspaces:read", true),
            ("daytona:workspaces:read", "daytona:workspaces", false),
            ("daytona:org:myorg", "daytona:org:myorg", true),
            ("daytona:org:myorg", "daytona:org:other", false),
            ("daytona:org:*", "daytona:org:acme", true),
            ("daytona:*", "daytona", true),
            ("daytona", "daytona-prod", false),
            ("*", "daytona:workspaces", true),
            ("*", "admin:agents:read", false),
            ("admin:*", "admin:backends:write", true),
            ("admin:agents:*", "admin:backends:read", false),
            ("github:myorg/*", "github:myorg/api:read", true),
            ("github:myorg/*:read", "github:myorg/api", false),
            ("github:o?g/x", "github:org/x", true),
            ("github:o?g/x", "github:o*g/x", false),
        ];
        for (grant, requested, allowed) in table {
            assert_eq!(
                scope(grant).covers(&scope(requested)),
                allowed,
                "{grant} covers {requested}"
            );
        }
    }

    #[test]
    fn deny_patterns_overlap_both_ways() {
        let deny = scope("daytona:org:prod");
        assert!(deny.overlaps(&scope("daytona:org:prod")));
        assert!(deny.overlaps(&scope("daytona")));
        assert!(!deny.overlaps(&scope("daytona:workspaces")));
        assert!(scope("github:*:admin").overlaps(&scope("github:*")));
    }

    #[test]
    fn no_grants_cover_nothing() {
        assert!(!Grants::default().covers(&scope("daytona")));
    }

    #[test]
    fn invalid_scopes_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("Daytona", "not a backend name"),
            ("daytona:", "empty segment"),
            ("daytona::x", "empty segment"),
            ("daytona:a b", "' ' is not allowed"),
            ("daytona:a,b", "',' is not allowed"),
            ("admin", "admin scopes have the form"),
            ("admin:agents", "admin scopes have the form"),
            ("admin:secrets:read", "admin scopes have the form"),
            ("admin:agents:delete", "admin scopes have the form"),
            ("*:x", "not a backend name"),
            ("daytona*", "not a backend name"),
        ];
        for (input, reason) in cases {
            let err = Scope::parse(input).expect_err(input).to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
        let long = format!("daytona:{}", "a".repeat(129));
        assert!(Scope::parse(&long).is_err());
        let too_long = format!("daytona{}", ":abc".repeat(70));
        assert!(
            Scope::parse(&too_long)
                .expect_err("too long")
                .to_string()
                .contains("longer than 256")
        );
    }

    #[test]
    fn grants_are_sorted_and_deduplicated() {
        let grants = Grants::parse(&["b", "a", "b"]).expect("valid");
        assert_eq!(grants.to_strings(), vec!["a", "b"]);
    }

    fn backend() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,6}".prop_filter("not admin", |b| b != "admin")
    }

    fn pattern_segment() -> impl Strategy<Value = String> {
        "[a-c*?]{1,4}"
    }

    fn literal_segment() -> impl Strategy<Value = String> {
        "[a-c*?]{1,4}"
    }

    fn pattern() -> impl Strategy<Value = String> {
        (backend(), prop::collection::vec(pattern_segment(), 0..4))
            .prop_map(|(b, segs)| std::iter::once(b).chain(segs).collect::<Vec<_>>().join(":"))
    }

    fn requested() -> impl Strategy<Value = String> {
        (backend(), prop::collection::vec(literal_segment(), 0..5))
            .prop_map(|(b, segs)| std::iter::once(b).chain(segs).collect::<Vec<_>>().join(":"))
    }

    proptest! {
        #[test]
        fn a_pattern_never_grants_another_backend(p in pattern(), s in requested()) {
            let (p, s) = (scope(&p), scope(&s));
            if p.covers(&s) {
                prop_assert_eq!(p.backend(), s.backend());
            }
        }

        #[test]
        fn star_never_covers_admin(resource in prop::sample::select(ADMIN_RESOURCES.to_vec()),
                                   action in prop::sample::select(vec!["read", "write", "*"])) {
            let admin = scope(&format!("admin:{resource}:{action}"));
            prop_assert!(!scope("*").covers(&admin));
            prop_assert!(!scope("*").overlaps(&admin));
        }

        #[test]
        fn a_scope_without_wildcards_covers_itself_and_what_is_narrower(
            s in "[a-z][a-z0-9-]{0,6}(:[a-z0-9._/@-]{1,5}){0,3}", extra in "[a-z]{1,4}") {
            prop_assume!(!s.starts_with("admin"));
            let s = scope(&s);
            prop_assert!(s.covers(&s));
            let narrower = scope(&format!("{s}:{extra}"));
            prop_assert!(s.covers(&narrower));
            prop_assert!(!narrower.covers(&s));
        }

        #[test]
        fn non_admin_patterns_never_cover_admin(p in pattern(),
                                                 resource in prop::sample::select(ADMIN_RESOURCES.to_vec())) {
            let admin = scope(&format!("admin:{resource}:read"));
            prop_assert!(!scope(&p).covers(&admin));
        }

        #[test]
        fn the_parser_never_panics(input in "\\PC{0,300}") {
            let _ = Scope::parse(&input);
        }
    }
}

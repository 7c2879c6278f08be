//! GitHub scopes (§19) and the one token they become.
//!
//! | scope | repositories | permissions |
//! |---|---|---|
//! | `github` | every repository of the installation | the configured defaults |
//! | `github:OWNER/REPO`, `github:OWNER/*` | that one, or all of OWNER's | the configured defaults |
//! | `github:OWNER/REPO:PERMISSION[:read\|write]` | that one (or `*`) | that permission (level `read` by default) |
//!
//! An installation token applies every permission it holds to every repository it holds, so
//! the token for several scopes is their union only when that union grants nothing that no
//! scope asked for: `contents:read` on one repository and `contents:write` on another would
//! give write on both, and is refused naming the conflict. `metadata:read` is always added
//! (GitHub requires it). One token serves one owner's installation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use creddy_plugin::protocol::{ErrorKind, ScopeInfo};
use creddy_plugin::sdk::PluginError;

/// The repository permissions a GitHub App may hold (GitHub's App permission names).
pub const REPOSITORY_PERMISSIONS: [&str; 23] = [
    "actions",
    "administration",
    "checks",
    "codespaces",
    "contents",
    "dependabot_secrets",
    "deployments",
    "environments",
    "issues",
    "metadata",
    "packages",
    "pages",
    "pull_requests",
    "repository_custom_properties",
    "repository_hooks",
    "repository_projects",
    "secret_scanning_alerts",
    "secrets",
    "security_events",
    "single_file",
    "statuses",
    "vulnerability_alerts",
    "workflows",
];

/// A permission's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `read`.
    Read,
    /// `write` (which includes reading).
    Write,
}

impl Level {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }

    /// GitHub's name of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Permissions by name.
pub type Permissions = BTreeMap<String, Level>;

/// Parses `PERMISSION[:read|write]` (level `read` when absent), as scopes and
/// `default_permissions` write them.
pub fn parse_permission(text: &str) -> Option<(String, Level)> {
    let (name, level) = match text.split_once(':') {
        Some((name, level)) => (name, Level::parse(level)?),
        None => (text, Level::Read),
    };
    REPOSITORY_PERMISSIONS
        .contains(&name)
        .then(|| (name.to_owned(), level))
}

/// The repositories a scope names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repos {
    /// Every repository (of the installation, or of the owner named).
    All,
    /// One repository, by name (without its owner).
    One(String),
}

/// One scope, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// The owner named (`None` for plain `github`).
    pub owner: Option<String>,
    /// Its repositories.
    pub repos: Repos,
    /// The one permission it names; `None` means the configured defaults.
    pub permission: Option<(String, Level)>,
}

/// A GitHub login: 1 to 39 of letters, digits and `-`, not starting with `-`.
fn is_owner(text: &str) -> bool {
    (1..=39).contains(&text.len())
        && !text.starts_with('-')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A repository name: 1 to 100 of letters, digits, `.`, `_` and `-`, not `.` or `..`.
fn is_repo(text: &str) -> bool {
    (1..=100).contains(&text.len())
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Reads a scope whose first segment is `github`; `None` when the plugin does not support it.
pub fn parse(scope: &str) -> Option<Form> {
    let segments: Vec<&str> = scope.split(':').collect();
    let (first, rest) = segments.split_first()?;
    if *first != "github" {
        return None;
    }
    let Some((path, permission)) = rest.split_first() else {
        return Some(Form {
            owner: None,
            repos: Repos::All,
            permission: None,
        });
    };
    let (owner, repo) = path.split_once('/')?;
    if !is_owner(owner) {
        return None;
    }
    let repos = match repo {
        "*" => Repos::All,
        name if is_repo(name) => Repos::One(name.to_owned()),
        _ => return None,
    };
    let permission = match permission {
        [] => None,
        [name] => Some(parse_permission(name)?),
        [name, level] if !level.is_empty() => Some(parse_permission(&format!("{name}:{level}"))?),
        _ => return None,
    };
    Some(Form {
        owner: Some(owner.to_owned()),
        repos,
        permission,
    })
}

/// The token to mint for a set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The owner whose installation mints it (`None`: the configured installation).
    pub owner: Option<String>,
    /// The repositories, by name; `None` means every repository of the installation.
    pub repositories: Option<Vec<String>>,
    /// The permissions, `metadata: read` included.
    pub permissions: Permissions,
}

impl Plan {
    /// `owner/repo, …` or `every repository`, for messages and metadata.
    pub fn repositories_text(&self) -> String {
        match (&self.repositories, &self.owner) {
            (None, Some(owner)) => format!("{owner}/*"),
            (None, None) => "*".to_owned(),
            (Some(names), owner) => names
                .iter()
                .map(|n| format!("{}/{n}", owner.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// `contents:write,metadata:read`, for metadata.
    pub fn permissions_text(&self) -> String {
        self.permissions
            .iter()
            .map(|(name, level)| format!("{name}:{}", level.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What one scope asks for, with the defaults applied.
struct Ask<'a> {
    scope: &'a str,
    repos: Repos,
    permissions: Permissions,
}

impl Ask<'_> {
    /// Whether it asks for `level` of `permission` on `repo` (`None`: every repository).
    fn covers(&self, repo: Option<&str>, permission: &str, level: Level) -> bool {
        let repo_ok = match (&self.repos, repo) {
            (Repos::All, _) => true,
            (Repos::One(name), Some(repo)) => name == repo,
            (Repos::One(_), None) => false,
        };
        repo_ok
            && self
                .permissions
                .get(permission)
                .is_some_and(|l| *l >= level)
    }
}

struct Shown<'a>(Option<&'a str>, Option<&'a str>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown(Some(owner), Some(repo)) => write!(f, "{owner}/{repo}"),
            Shown(Some(owner), None) => write!(f, "every repository of {owner}"),
            Shown(None, _) => f.write_str("every repository of the installation"),
        }
    }
}

fn unsupported(message: String) -> PluginError {
    PluginError::new(ErrorKind::ScopeNotSupported, message)
}

/// The one token for `scopes` (each a scope of this plugin), with `defaults` for the scopes
/// that name no permission; refused when the scopes cannot be one token.
pub fn plan(scopes: &[String], defaults: &Permissions) -> Result<Plan, PluginError> {
    let mut owners = BTreeSet::new();
    let mut asks = Vec::new();
    for scope in scopes {
        let form = parse(scope).ok_or_else(|| {
            unsupported(format!(
                "the GitHub plugin does not support the scope '{scope}'"
            ))
        })?;
        if let Some(owner) = &form.owner {
            owners.insert(owner.to_ascii_lowercase());
        }
        let mut permissions = match form.permission {
            Some((name, level)) => Permissions::from([(name, level)]),
            None => defaults.clone(),
        };
        permissions.remove("metadata");
        asks.push(Ask {
            scope,
            repos: form.repos,
            permissions,
        });
    }
    if owners.len() > 1 {
        return Err(unsupported(format!(
            "one GitHub token serves one owner's installation, and the scopes name {}",
            owners.into_iter().collect::<Vec<_>>().join(" and ")
        ))
        .with_remedy("ask for each owner's repositories in a lease of its own"));
    }
    let owner = scopes.iter().filter_map(|s| parse(s)?.owner).next();
    let repositories: Option<BTreeSet<String>> = asks
        .iter()
        .map(|a| match &a.repos {
            Repos::All => None,
            Repos::One(name) => Some(name.clone()),
        })
        .collect();
    let mut permissions = Permissions::new();
    for ask in &asks {
        for (name, level) in &ask.permissions {
            let held = permissions.entry(name.clone()).or_insert(*level);
            *held = (*held).max(*level);
        }
    }
    let targets: Vec<Option<&str>> = match &repositories {
        None => vec![None],
        Some(names) => names.iter().map(|n| Some(n.as_str())).collect(),
    };
    for repo in &targets {
        for (name, level) in &permissions {
            if !asks.iter().any(|a| a.covers(*repo, name, *level)) {
                let asked = asks
                    .iter()
                    .filter(|a| a.permissions.contains_key(name))
                    .map(|a| a.scope)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(unsupported(format!(
                    "these scopes cannot be one GitHub token: it would grant {name}:{} on {}, which no requested scope asks for (from {asked})",
                    level.as_str(),
                    Shown(owner.as_deref(), *repo),
                ))
                .with_remedy("ask for the same permissions on every repository of a lease, or use a lease per repository"));
            }
        }
    }
    permissions.insert("metadata".to_owned(), Level::Read);
    Ok(Plan {
        owner,
        repositories: repositories.map(|set| set.into_iter().collect()),
        permissions,
    })
}

/// The scopes the plugin describes.
pub fn descriptions() -> Vec<ScopeInfo> {
    let info = ScopeInfo::new;
    vec![
        info(
            "github",
            "Every repository of the installation, with the default permissions",
            &["github"],
        ),
        info(
            "github:OWNER/REPO",
            "One repository (or OWNER/* for all of the owner's), with the default permissions",
            &["github:acme/widgets", "github:acme/*"],
        ),
        info(
            "github:OWNER/REPO:PERMISSION[:read|write]",
            "One permission on one repository; the level is read unless written",
            &[
                "github:acme/widgets:contents:write",
                "github:acme/widgets:pull_requests",
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Permissions {
        [
            ("contents", Level::Write),
            ("pull_requests", Level::Write),
            ("metadata", Level::Read),
        ]
        .into_iter()
        .map(|(n, l)| (n.to_owned(), l))
        .collect()
    }

    fn planned(scopes: &[&str]) -> Result<Plan, String> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        plan(&scopes, &defaults()).map_err(|e| e.to_string())
    }

    fn permissions(pairs: &[(&str, Level)]) -> Permissions {
        pairs.iter().map(|(n, l)| ((*n).to_owned(), *l)).collect()
    }

    #[test]
    fn every_scope_form_is_read_and_others_are_not() {
        assert_eq!(
            parse("github:acme/widgets:contents:write"),
            Some(Form {
                owner: Some("acme".into()),
                repos: Repos::One("widgets".into()),
                permission: Some(("contents".into(), Level::Write)),
            })
        );
        assert_eq!(
            parse("github:acme/widgets:issues").and_then(|f| f.permission),
            Some(("issues".into(), Level::Read))
        );
        assert_eq!(parse("github:acme/*").map(|f| f.repos), Some(Repos::All));
        assert_eq!(parse("github").map(|f| f.owner), Some(None));
        for bad in [
            "github:acme",
            "github:acme/",
            "github:/widgets",
            "github:acme/..",
            "github:-acme/widgets",
            "github:acme/widgets:contents:admin",
            "github:acme/widgets:teleport",
            "github:acme/widgets:contents:write:extra",
            "github:acme/wid gets",
            "gitlab:acme/widgets",
            "github:acme/widgets:contents:",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn one_scope_is_its_repository_and_permission_with_metadata() {
        let plan = planned(&["github:acme/widgets:contents:write"]).expect("one token");
        assert_eq!(plan.owner.as_deref(), Some("acme"));
        assert_eq!(plan.repositories, Some(vec!["widgets".to_owned()]));
        assert_eq!(
            plan.permissions,
            permissions(&[("contents", Level::Write), ("metadata", Level::Read)])
        );
        let all = planned(&["github"]).expect("one token");
        assert_eq!((all.owner, all.repositories), (None, None));
        assert_eq!(all.permissions, defaults());
    }

    #[test]
    fn a_union_that_grants_nothing_more_is_one_token() {
        // The same permissions on two repositories.
        let two = planned(&[
            "github:acme/a:contents:write",
            "github:acme/b:contents:write",
        ])
        .expect("one token");
        assert_eq!(two.repositories, Some(vec!["a".to_owned(), "b".to_owned()]));
        // Two permissions on one repository.
        let both =
            planned(&["github:acme/a:contents:write", "github:acme/a:issues"]).expect("one token");
        assert_eq!(
            both.permissions,
            permissions(&[
                ("contents", Level::Write),
                ("issues", Level::Read),
                ("metadata", Level::Read)
            ])
        );
        // A narrower scope inside a broader one: the broader one.
        let inside = planned(&["github:acme/*", "github:acme/a:contents:read"]).expect("one");
        assert_eq!(inside.repositories, None);
        assert_eq!(inside.permissions, defaults());
    }

    #[test]
    fn a_union_that_would_grant_more_is_refused_naming_the_conflict() {
        let refused = planned(&[
            "github:acme/a:contents:read",
            "github:acme/b:contents:write",
        ])
        .expect_err("write would reach a");
        assert!(
            refused.contains("it would grant contents:write on acme/a"),
            "{refused}"
        );
        let refused = planned(&["github:acme/a:issues:write", "github:acme/b:contents:write"])
            .expect_err("issues would reach b");
        assert!(refused.contains("on acme/"), "{refused}");
        let refused = planned(&["github:acme/*:issues", "github:acme/a"])
            .expect_err("a's defaults would reach every repository");
        assert!(refused.contains("on every repository of acme"), "{refused}");
        let refused = planned(&["github:acme/a", "github:umbrella/b"]).expect_err("two owners");
        assert!(refused.contains("acme and umbrella"), "{refused}");
        let refused = planned(&["github:acme/a:teleport"]).expect_err("unknown permission");
        assert!(refused.contains("does not support the scope"), "{refused}");
    }
}

//! Daytona scopes and the permissions they map to (§10.3 of the specification).
//!
//! | scope | permissions |
//! |---|---|
//! | `daytona`, `daytona:*`, `daytona:org:*` | the configured `delegated_permissions` |
//! | `daytona:workspaces` | `write:sandboxes`, `delete:sandboxes` ∩ delegated |
//! | `daytona:workspaces:read` | none (Daytona grants reading implicitly) |
//! | `daytona:org:<org>[:workspaces[:read]]` | as above, only for the configured organisation |

use creddy_plugin::protocol::{ErrorKind, ScopeInfo};
use creddy_plugin::sdk::PluginError;

use crate::config::DaytonaConfig;

/// What a scope asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The delegated permissions.
    Full,
    /// Sandbox write and delete.
    Workspaces,
    /// Reading only.
    Read,
}

/// A parsed scope: its access and the organisation it names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What it grants.
    pub access: Access,
    /// The organisation named (`None` for no organisation or `*`).
    pub org: Option<String>,
}

fn is_org(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn access(rest: &[&str]) -> Option<Access> {
    match rest {
        [] | ["*"] => Some(Access::Full),
        ["workspaces"] => Some(Access::Workspaces),
        ["workspaces", "read"] => Some(Access::Read),
        _ => None,
    }
}

/// Parses a scope whose first segment is `daytona`; `None` when the plugin does not support it.
pub fn parse(scope: &str) -> Option<Parsed> {
    let segments: Vec<&str> = scope.split(':').collect();
    match segments.as_slice() {
        ["daytona", "org", "*"] => Some(Parsed {
            access: Access::Full,
            org: None,
        }),
        ["daytona", "org", org, rest @ ..] if is_org(org) && !matches!(rest, ["*"]) => access(rest)
            .map(|access| Parsed {
                access,
                org: Some((*org).to_owned()),
            }),
        ["daytona", rest @ ..] if rest.first() != Some(&"org") => {
            access(rest).map(|access| Parsed { access, org: None })
        }
        _ => None,
    }
}

/// The permissions for a set of requested scopes: their union, with every named
/// organisation equal to the configured one.
pub fn permissions(scopes: &[String], config: &DaytonaConfig) -> Result<Vec<String>, PluginError> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        let parsed = parse(scope).ok_or_else(|| {
            PluginError::new(
                ErrorKind::ScopeNotSupported,
                format!("the Daytona plugin does not support the scope '{scope}'"),
            )
        })?;
        if let Some(org) = &parsed.org
            && config.organization_id.as_deref() != Some(org.as_str())
        {
            return Err(PluginError::new(
                    ErrorKind::OrgNotConfigured,
                    format!("backend '{}' is not configured for organization '{org}'", config.backend),
                )
                .with_remedy("request a scope of the backend's organisation, or ask an admin to configure a backend for that organisation"));
        }
        let granted: Vec<String> = match parsed.access {
            Access::Full => config.delegated_permissions.clone(),
            Access::Workspaces => ["write:sandboxes", "delete:sandboxes"]
                .iter()
                .filter(|p| config.delegated_permissions.iter().any(|d| d == *p))
                .map(|p| (*p).to_owned())
                .collect(),
            Access::Read => vec![],
        };
        for permission in granted {
            if !out.contains(&permission) {
                out.push(permission);
            }
        }
    }
    Ok(out)
}

/// The scope forms, for `scopes` and `plugin info`.
pub fn descriptions() -> Vec<ScopeInfo> {
    let info = ScopeInfo::new;
    vec![
        info(
            "daytona",
            "the configured delegated permissions",
            &["daytona"],
        ),
        info(
            "daytona:workspaces",
            "create and delete sandboxes",
            &["daytona:workspaces"],
        ),
        info(
            "daytona:workspaces:read",
            "read-only access",
            &["daytona:workspaces:read"],
        ),
        info(
            "daytona:org:<org>",
            "as daytona, only for the backend's organisation",
            &["daytona:org:myorg"],
        ),
        info(
            "daytona:org:<org>:workspaces[:read]",
            "as daytona:workspaces[:read], for the organisation",
            &["daytona:org:myorg:workspaces:read"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(org: Option<&str>) -> DaytonaConfig {
        let mut value = json!({"api_key": "k"});
        if let Some(org) = org {
            value["organization_id"] = json!(org);
        }
        DaytonaConfig::from_value("daytona", &value).expect("valid")
    }

    fn perms(scopes: &[&str], org: Option<&str>) -> Result<Vec<String>, PluginError> {
        permissions(
            &scopes.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            &config(org),
        )
    }

    #[test]
    fn the_specification_table() {
        assert_eq!(perms(&["daytona"], None).map(|p| p.len()), Ok(8));
        assert_eq!(
            perms(&["daytona:workspaces"], None),
            Ok(vec!["write:sandboxes".into(), "delete:sandboxes".into()])
        );
        assert_eq!(perms(&["daytona:workspaces:read"], None), Ok(vec![]));
        assert_eq!(
            perms(&["daytona:org:acme"], Some("acme")).map(|p| p.len()),
            Ok(8)
        );
        assert_eq!(
            perms(&["daytona:org:acme:workspaces:read"], Some("acme")),
            Ok(vec![])
        );
        assert_eq!(perms(&["daytona:org:*"], None).map(|p| p.len()), Ok(8));
        assert_eq!(
            perms(&["daytona:workspaces:read", "daytona:workspaces"], None).map(|p| p.len()),
            Ok(2),
            "union"
        );
    }

    #[test]
    fn organisations_must_match_exactly() {
        let wrong = perms(&["daytona:org:Acme"], Some("acme")).expect_err("case-sensitive");
        assert_eq!(wrong.kind, ErrorKind::OrgNotConfigured);
        assert_eq!(
            wrong.message,
            "backend 'daytona' is not configured for organization 'Acme'"
        );
        assert!(
            perms(&["daytona:org:acme"], None).is_err(),
            "an org scope needs a configured organisation"
        );
        assert!(perms(&["daytona:org:acme", "daytona:org:other"], Some("acme")).is_err());
    }

    #[test]
    fn only_the_listed_forms_match() {
        for good in [
            "daytona",
            "daytona:*",
            "daytona:workspaces",
            "daytona:workspaces:read",
            "daytona:org:x",
            "daytona:org:*",
            "daytona:org:my.org_1-x:workspaces",
        ] {
            assert!(parse(good).is_some(), "{good}");
        }
        for bad in [
            "daytona:sandboxes",
            "daytona:workspaces:write",
            "daytona:org",
            "daytona:org:a b",
            "other",
            "daytona:org:x:*:read",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}

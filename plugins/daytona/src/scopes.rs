//! Daytona scopes and the permissions they map to (§10.3 of the specification).
//!
//! | scope | permissions |
//! |---|---|
//! | `daytona`, `daytona:*`, `daytona:org:*` | the configured `delegated_permissions` |
//! | `daytona:workspaces` | `write:sandboxes`, `delete:sandboxes` ∩ delegated |
//! | `daytona:workspaces:read` | none (Daytona grants reading implicitly) |
//! | `daytona:org:<org>[:workspaces[:read]]` | as above, only for the configured organisation |

use creddy_plugin::protocol::{ErrorKind, ScopeInfo};
use creddy_plugin::route_policy::{RoutePolicy, RouteRule};
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

/// The route policy of proxy mode (§20) over Daytona's API, from the same permission table:
/// key, organisation, user, admin and runner routes never; toolbox calls (`/_tb/…`) and
/// object-storage push access only with `write:sandboxes` and `write:snapshots`; reads
/// always, as Daytona grants them; mutations of sandboxes, snapshots, volumes and registries
/// with their `write:` permission, deletions with their `delete:` one; nothing else.
pub fn route_policy() -> RoutePolicy {
    let rule = |methods: &[&str], path: &str, requires: Option<&str>| RouteRule {
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        path: path.to_owned(),
        requires: requires.map(str::to_owned),
    };
    let mut rules = vec![
        rule(&["*"], "/_tb", Some("write:sandboxes")),
        rule(
            &["GET"],
            "/object-storage/push-access",
            Some("write:snapshots"),
        ),
        rule(&["GET", "HEAD"], "*", None),
    ];
    for (path, kind) in [
        ("/sandbox", "sandboxes"),
        ("/snapshots", "snapshots"),
        ("/volumes", "volumes"),
        ("/docker-registry", "registries"),
    ] {
        rules.push(rule(&["DELETE"], path, Some(&format!("delete:{kind}"))));
        rules.push(rule(
            &["POST", "PUT", "PATCH"],
            path,
            Some(&format!("write:{kind}")),
        ));
    }
    RoutePolicy {
        never: [
            "/api-keys",
            "/organizations",
            "/users",
            "/admin",
            "/runners",
        ]
        .iter()
        .map(|p| (*p).to_owned())
        .collect(),
        rules,
    }
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

    #[test]
    fn the_proxy_route_policy_follows_the_permission_table() {
        use creddy_plugin::route_policy::RouteRefusal;
        let policy = route_policy();
        let workspaces = ["write:sandboxes", "delete:sandboxes"];
        assert_eq!(
            policy.decide("GET", "/sandbox", &[]),
            Ok(()),
            "reads always"
        );
        assert_eq!(policy.decide("POST", "/sandbox", &workspaces), Ok(()));
        assert_eq!(policy.decide("DELETE", "/sandbox/s1", &workspaces), Ok(()));
        assert_eq!(
            policy.decide("POST", "/sandbox", &[]),
            Err(RouteRefusal::Requires("write:sandboxes".into()))
        );
        assert_eq!(
            policy.decide("DELETE", "/volumes/v1", &workspaces),
            Err(RouteRefusal::Requires("delete:volumes".into()))
        );
        assert_eq!(
            policy.decide("GET", "/_tb/t1/s1/files", &[]),
            Err(RouteRefusal::Requires("write:sandboxes".into())),
            "toolbox calls need write:sandboxes, reads included"
        );
        assert_eq!(
            policy.decide("GET", "/object-storage/push-access", &workspaces),
            Err(RouteRefusal::Requires("write:snapshots".into()))
        );
        for never in [
            "/api-keys",
            "/organizations/o1/users",
            "/users/me",
            "/admin/x",
            "/runners",
        ] {
            assert_eq!(
                policy.decide("GET", never, &crate::config::DEFAULT_DELEGATED),
                Err(RouteRefusal::Never),
                "{never}"
            );
        }
        assert_eq!(
            policy.decide("POST", "/regions", &workspaces),
            Err(RouteRefusal::NoRule)
        );
    }
}

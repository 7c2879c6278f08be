//! `creddy git-credential get|store|erase`: git's credential-helper protocol (§19) over a
//! GitHub backend, so that `git config credential.helper '!creddy git-credential'` makes
//! `git clone` and `git push` work with tokens that live as long as a lease.
//!
//! For `get`, git describes the URL on stdin (`protocol`, `host`, and `path` when
//! `credential.useHttpPath` is set). Only `https` is answered. The token is asked for the
//! repository of the path, with the agent's own grants that reach it (`github:acme/widgets`
//! for a grant of `github`, `github:acme/*` or `github:acme/widgets`; the grant itself for
//! `github:acme/widgets:contents:write`), and given only when the backend serves git at that
//! host (the credential's `git_host`); otherwise its lease is revoked at once and git gets
//! nothing. `store` and `erase` have nothing to do: tokens end with their lease.

use std::io::Read as _;

use crate::cli::{GitAction, Global};
use crate::credentials::agent_client;
use crate::failure::{EXIT_USAGE, Failure, Result};

/// The most git may send.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// What git described.
#[derive(Debug, Default, PartialEq, Eq)]
struct Described {
    protocol: String,
    host: String,
    path: Option<String>,
}

/// Reads git's `key=value` lines up to a blank line or the end.
fn read_description(input: &str) -> Described {
    let mut described = Described::default();
    for line in input.lines() {
        if line.is_empty() {
            break;
        }
        match line.split_once('=') {
            Some(("protocol", v)) => described.protocol = v.to_owned(),
            Some(("host", v)) => described.host = v.to_owned(),
            Some(("path", v)) if !v.is_empty() => described.path = Some(v.to_owned()),
            _ => {}
        }
    }
    described
}

/// `owner/name` of a path such as `acme/widgets.git` or `acme/widgets.git/info/refs`.
fn repository_of(path: &str) -> Option<(String, String)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let owner = parts.next().filter(|o| !o.is_empty())?;
    let name = parts.next()?;
    let name = name.strip_suffix(".git").unwrap_or(name);
    (!name.is_empty()).then(|| (owner.to_owned(), name.to_owned()))
}

/// The scopes to ask for: each of the agent's grants of `backend` that reaches the
/// repository, narrowed to it.
fn scopes_for(
    backend: &str,
    grants: &[String],
    repository: Option<&(String, String)>,
) -> Vec<String> {
    let mut scopes = Vec::new();
    for grant in grants {
        let mut segments = grant.split(':');
        if segments.next() != Some(backend) {
            continue;
        }
        let rest: Vec<&str> = segments.collect();
        let scope = match (rest.as_slice(), repository) {
            ([] | ["*"], None) => Some(backend.to_owned()),
            ([] | ["*"], Some((owner, name))) => Some(format!("{backend}:{owner}/{name}")),
            ([path, permission @ ..], Some((owner, name))) => {
                let reaches = match path.split_once('/') {
                    Some((o, "*")) => o.eq_ignore_ascii_case(owner),
                    Some((o, n)) => o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name),
                    None => false,
                };
                reaches.then(|| {
                    [format!("{backend}:{owner}/{name}")]
                        .into_iter()
                        .chain(permission.iter().map(|p| (*p).to_owned()))
                        .collect::<Vec<_>>()
                        .join(":")
                })
            }
            _ => None,
        };
        if let Some(scope) = scope.filter(|s| !scopes.contains(s)) {
            scopes.push(scope);
        }
    }
    scopes
}

/// Runs one helper action.
pub async fn run(
    global: &Global,
    action: GitAction,
    backend: &str,
    ttl: Option<String>,
) -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES)
        .read_to_string(&mut input)
        .map_err(|e| Failure::usage(format!("cannot read git's request on stdin: {e}")))?;
    if action != GitAction::Get {
        return Ok(());
    }
    let described = read_description(&input);
    if described.protocol != "https" || described.host.is_empty() {
        return Ok(());
    }
    let repository = described.path.as_deref().and_then(repository_of);
    let client = agent_client(global).await?;
    let status: creddy_api::agents::AgentStatus = client.get(&["v1", "status"]).await?;
    let scopes = scopes_for(backend, &status.scopes, repository.as_ref());
    if scopes.is_empty() {
        return Err(no_grant(backend, repository.as_ref()));
    }
    let issued = super::credentials::request_credential(&client, backend, ttl, &scopes).await?;
    if let Err(why) = serves_git_at(&issued.metadata, &described.host) {
        let _: std::result::Result<creddy_api::leases::Revoked, _> =
            client.delete_json(&["v1", "active", &issued.id]).await;
        eprintln!("creddy: backend '{backend}' {why}; no credential given");
        return Ok(());
    }
    crate::workload::mask_for_github_actions(issued.token.expose());
    print!(
        "username=x-access-token\npassword={}\npassword_expiry_utc={}\n",
        issued.token.expose(),
        issued.expires_at.as_millis() / 1000
    );
    Ok(())
}

/// Whether a credential with `metadata` may go to git for `host`: only when its backend
/// serves git at that very host (`git_host`), never to whatever host git names, and never
/// from a backend that serves no git at all.
fn serves_git_at(
    metadata: &std::collections::BTreeMap<String, String>,
    host: &str,
) -> std::result::Result<(), String> {
    match metadata.get("git_host") {
        Some(git_host) if git_host.eq_ignore_ascii_case(host) => Ok(()),
        Some(git_host) => Err(format!("serves git at {git_host}, not {host}")),
        None => Err("serves no git (its credentials name no git_host)".to_owned()),
    }
}

fn no_grant(backend: &str, repository: Option<&(String, String)>) -> Failure {
    match repository {
        Some((owner, name)) => Failure::new(
            EXIT_USAGE,
            format!("this agent holds no '{backend}' grant that reaches {owner}/{name}"),
        )
        .hint(format!(
            "ask for one: creddy request --can {backend}:{owner}/{name}:contents:write"
        )),
        None => Failure::new(
            EXIT_USAGE,
            format!("git sent no repository path, and this agent holds no plain '{backend}' grant"),
        )
        .hint("let git send the path: git config --global credential.useHttpPath true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_s_description_is_read_up_to_the_blank_line() {
        let described = read_description(
            "protocol=https\nhost=github.com\npath=acme/widgets.git\n\nhost=evil\n",
        );
        assert_eq!(
            described,
            Described {
                protocol: "https".into(),
                host: "github.com".into(),
                path: Some("acme/widgets.git".into()),
            }
        );
        assert_eq!(
            repository_of("acme/widgets.git/info/refs"),
            Some(("acme".into(), "widgets".into()))
        );
        assert_eq!(repository_of("acme"), None);
    }

    #[test]
    fn a_credential_goes_only_to_the_host_its_backend_serves_git_at() {
        let metadata = |host: Option<&str>| {
            host.map(|h| ("git_host".to_owned(), h.to_owned()))
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(
            serves_git_at(&metadata(Some("github.com")), "GitHub.com"),
            Ok(())
        );
        assert!(serves_git_at(&metadata(Some("github.com")), "evil.example").is_err());
        let none = serves_git_at(&metadata(None), "github.com").expect_err("no git host");
        assert!(none.contains("serves no git"), "{none}");
    }

    #[test]
    fn grants_that_reach_the_repository_are_narrowed_to_it() {
        let repo = ("acme".to_owned(), "widgets".to_owned());
        let grants: Vec<String> = [
            "github:acme/widgets:contents:write",
            "github:acme/*:issues",
            "github:acme/gadgets",
            "github:umbrella/*",
            "daytona",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            scopes_for("github", &grants, Some(&repo)),
            [
                "github:acme/widgets:contents:write",
                "github:acme/widgets:issues"
            ]
        );
        let broad = vec!["github".to_owned()];
        assert_eq!(
            scopes_for("github", &broad, Some(&repo)),
            ["github:acme/widgets"]
        );
        assert_eq!(scopes_for("github", &broad, None), ["github"]);
        assert!(scopes_for("github", &grants, None).is_empty());
        assert!(scopes_for("gh", &grants, Some(&repo)).is_empty());
    }
}

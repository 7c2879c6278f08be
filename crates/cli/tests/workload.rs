//! Workload identity end to end (§18): a job shaped like a GitHub Actions job, whose
//! `ACTIONS_ID_TOKEN_REQUEST_*` variables point at the test kit's runner endpoint, runs
//! `creddy get daytona --ttl 30m` with no creddy secret and gets a Daytona key that works on
//! the stand-in; a job of another repository, or one without `id-token: write`, is refused
//! with the claim and the remedy named.

use creddy_testkit::issuer::{Alg, Issuer};
use creddy_testkit::plugins::{install_as, workspace_binary};
use creddy_testkit::server::StandinProcess;
use creddy_testkit::store::Dialect;
use serde_json::json;

use crate::kit::{Site, creddy, http};

const MASTER: &str = "dtn_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

#[test]
fn a_github_actions_job_gets_a_daytona_key_with_no_creddy_secret() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the issuer");
    let issuer = runtime.block_on(Issuer::start());
    let kid = issuer.add_key(Alg::Rs256, true);
    let trust = format!(
        r#"
[[trust]]
name = "github"
issuer = "{}"
claims = {{ repository = "acme/widgets", ref = "refs/heads/*" }}
agent = "gh-{{repository}}"
scopes = ["daytona"]
max_ttl = "1h"
"#,
        issuer.url()
    );
    let site = Site::start_with_config(Dialect::Sqlite, &trust, &[]);
    let home = site.home.path();
    install_as(
        &workspace_binary("creddy-daytona", "creddy-daytona"),
        &home.join("plugins"),
        "daytona",
    );
    let standin = StandinProcess::start(
        &workspace_binary("creddy-daytona-standin", "daytona-standin"),
        &home.join("daytona.json"),
    );
    http()
        .post(format!("{}/_standin/seed", standin.control_url()))
        .json(&creddy_daytona_standin::master_seed(MASTER, "org-1"))
        .send()
        .expect("the stand-in answers");
    let key_file = home.join("daytona.key");
    std::fs::write(&key_file, MASTER).expect("the file is written");
    site.admin(&[
        "backend",
        "add",
        "daytona",
        "--set-file",
        &format!("api_key={}", key_file.display()),
        "--set",
        &format!("base_url={}", standin.api_url),
        "--set",
        "organization_id=org-1",
    ])
    .ok();

    let url = site.server.url();
    let job = |repository: &str| {
        let claims = issuer.github_claims(repository, "refs/heads/main", "ignored", now());
        let (request_url, request_token) = issuer.serve_runner(&kid, claims);
        let run = creddy(
            home,
            &["get", "daytona", "--ttl", "30m"],
            &[
                ("CREDDY_URL", url.as_str()),
                ("CREDDY_OIDC", "github-actions"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", request_url.as_str()),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token.as_str()),
                ("GITHUB_ACTIONS", "true"),
            ],
        );
        (run, request_token)
    };

    let (run, request_token) = job("acme/widgets");
    let key = run.ok().trim().to_owned();
    assert!(key.starts_with("dtn_"), "stdout is the key alone: {key}");
    assert!(
        run.stderr.contains(&format!("::add-mask::{key}")),
        "the key is masked in the job's log: {}",
        run.stderr
    );
    let created = http()
        .post(format!("{}/sandbox", standin.api_url))
        .bearer_auth(&key)
        .json(&json!({"name": "from-ci"}))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(created, 200, "the key works upstream");
    let agents = site.admin(&["agent", "ls", "-o", "json"]);
    assert!(agents.ok().contains("gh-acme-widgets"), "{}", agents.stdout);
    assert!(
        !site.server.log().contains(&request_token),
        "the runner's request token never reaches creddy"
    );

    // Another repository's job: refused, naming the claim and the remedy.
    let (refused, _) = job("acme/gadgets");
    refused.fails(4, "claim 'repository' is 'acme/gadgets'");
    assert!(
        refused.stderr.contains("trust's claims"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty(), "nothing on stdout");

    // A job without `permissions: id-token: write` has no request variables.
    let bare = creddy(
        home,
        &["get", "daytona"],
        &[
            ("CREDDY_URL", url.as_str()),
            ("CREDDY_OIDC", "github-actions"),
        ],
    );
    bare.fails(4, "id-token: write");

    // The same job with its token in a file (a Kubernetes projected token's way).
    let token_file = home.join("oidc-token");
    let claims = issuer.github_claims("acme/widgets", "refs/heads/dev", "creddy", now());
    std::fs::write(&token_file, issuer.sign(&kid, &claims)).expect("the file is written");
    let source = format!("file:{}", token_file.display());
    let from_file = creddy(
        home,
        &["--oidc", &source, "get", "daytona", "--ttl", "2h"],
        &[("CREDDY_URL", url.as_str())],
    );
    from_file.fails(2, "trust 'github' max_ttl");
    drop(runtime);
}

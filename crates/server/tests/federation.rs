//! Workload identity (§18) against issuers nobody on the team wrote the verifier for: the
//! test kit's issuer (discovery, JWKS, RS256 and ES256 keys, rotation, GitHub- and
//! Kubernetes-shaped claims) and a token minted by PyJWT. Every forged or mismatched token
//! is refused with nothing created, and the refusal is audited with the trust and the claim.

use creddy_core::Clock as _;
use creddy_core::trust::Trust;
use creddy_testkit::http::{Answer, Api};
use creddy_testkit::issuer::{Alg, Issuer, trust_table};
use creddy_testkit::server::TestServer;
use creddy_testkit::store::Dialect;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

creddy_testkit::dialects!(Fed::start =>
    a_github_job_exchanges_its_token_and_vends_within_its_trust,
    forged_and_mismatched_tokens_are_refused_with_nothing_created,
    rotated_keys_are_fetched_once_and_redirects_are_not_followed,
    a_trust_taken_out_of_the_configuration_admits_and_vends_nothing_more,
    a_database_writer_moving_trusts_hands_a_workload_nothing_more,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

struct Fed {
    issuer: Issuer,
    /// The issuer's published RS256 and ES256 keys, and one added but not published yet.
    rsa: String,
    ec: String,
    rotated: String,
    server: TestServer,
    api: Api,
    admin: String,
    /// The server's configuration file (the trusts), read again by `reload_rules`.
    config: std::path::PathBuf,
    _config_dir: tempfile::TempDir,
}

/// The trusts of these tests, over `issuer` (keys from discovery unless `jwks_url`).
fn trusts(issuer: &str, jwks_url: &str) -> Vec<Trust> {
    let mut file: std::collections::BTreeMap<String, Vec<Trust>> =
        toml::from_str(&trusts_toml(issuer, jwks_url)).expect("the trusts parse");
    file.remove("trust").unwrap_or_default()
}

/// The same as the configuration file's text: GitHub jobs of `acme/widgets`, Kubernetes
/// service accounts of `ci`, GitLab jobs of protected `acme` branches.
fn trusts_toml(issuer: &str, jwks_url: &str) -> String {
    let keys = format!("jwks_url = \"{jwks_url}\"\n");
    [
        trust_table(
            "github",
            issuer,
            r#"repository = "acme/widgets", ref = "refs/heads/*""#,
            "gh-{repository}",
            &["test"],
            &format!("{keys}token_ttl = \"10m\"\nmax_ttl = \"30m\""),
        ),
        trust_table(
            "k8s",
            issuer,
            r#"sub = "system:serviceaccount:ci:*""#,
            "{sub}",
            &["test:read"],
            &keys,
        ),
        trust_table(
            "gitlab",
            issuer,
            r#"project_path = "acme/*", ref_protected = "true""#,
            "gl-{project_path}",
            &["test"],
            &keys,
        ),
    ]
    .concat()
}

impl Fed {
    async fn start(dialect: Dialect) -> Self {
        let issuer = Issuer::start().await;
        let rsa = issuer.add_key(Alg::Rs256, true);
        let ec = issuer.add_key(Alg::Es256, true);
        let rotated = issuer.add_key(Alg::Es256, false);
        let url = issuer.url().to_owned();
        let config_dir = tempfile::TempDir::new().expect("a temp dir");
        let config = config_dir.path().join("creddy.toml");
        std::fs::write(&config, trusts_toml(&url, "")).expect("the file is written");
        let server = TestServer::start_with(dialect, |s| {
            s.trusts = trusts_set(&url, "");
            s.config_file = Some(config.clone());
        })
        .await;
        server.install_test_plugin("test");
        let api = Api::new(&server.url());
        let admin = server.admin_token();
        let upstream = server.scratch().join("upstream");
        let added = api
            .add_test_backend(&admin, "test", "master", &upstream)
            .await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
        Self {
            issuer,
            rsa,
            ec,
            rotated,
            server,
            api,
            admin,
            config,
            _config_dir: config_dir,
        }
    }

    fn now(&self) -> i64 {
        self.server.clock.now().as_millis() / 1000
    }

    /// A GitHub-shaped token of `repository` on `main`, for audience `creddy`.
    fn github(&self, kid: &str, repository: &str) -> String {
        let claims = self
            .issuer
            .github_claims(repository, "refs/heads/main", "creddy", self.now());
        self.issuer.sign(kid, &claims)
    }

    async fn exchange(&self, token: &str) -> Answer {
        exchange(&self.api, token, JWT, None).await
    }

    async fn vend(&self, token: &str, ttl: &str) -> Answer {
        let path = format!("/v1/credentials/test?ttl={ttl}");
        self.api.call(Method::POST, &path, Some(token), None).await
    }

    async fn agent_names(&self) -> Vec<String> {
        let listed = self.api.get("/v1/admin/agents", &self.admin).await;
        listed
            .body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str().map(str::to_owned))
            .collect()
    }
}

/// `POST /oauth/token` with a token exchange of `token` (of `token_type`), narrowed to
/// `scope` when given.
async fn exchange(api: &Api, token: &str, token_type: &str, scope: Option<&str>) -> Answer {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", EXCHANGE)
        .append_pair("subject_token", token)
        .append_pair("subject_token_type", token_type);
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let form = form.finish();
    let request = api
        .request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    api.send(request).await
}

fn trusts_set(issuer: &str, jwks_url: &str) -> creddy_core::trust::TrustSet {
    creddy_core::trust::TrustSet::new(trusts(issuer, jwks_url)).expect("a valid set")
}

/// The `auth.failed` events of token exchanges, newest last.
async fn exchange_refusals(fed: &Fed) -> Vec<Value> {
    fed.server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "auth.failed" && e.details["grant"] == "token-exchange")
        .map(|e| e.details)
        .collect()
}

async fn a_github_job_exchanges_its_token_and_vends_within_its_trust(fed: Fed) {
    let discovery = fed.api.get("/.well-known/openid-configuration", "").await;
    assert_eq!(
        discovery.body["grant_types_supported"],
        json!(["client_credentials", EXCHANGE]),
        "{}",
        discovery.text
    );
    let token = fed.github(&fed.rsa, "acme/widgets");
    let exchanged = fed.exchange(&token).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);
    assert_eq!(
        exchanged.body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(exchanged.body["token_type"], "Bearer");
    assert_eq!(exchanged.body["expires_in"], 600, "the trust's token_ttl");
    assert_eq!(exchanged.body["scope"], "test");
    assert_eq!(exchanged.header("cache-control"), Some("no-store"));
    let access = exchanged.body["access_token"].as_str().unwrap_or_default();

    let long = fed.vend(access, "1h").await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST, "{}", long.text);
    assert!(
        long.error().contains("trust 'github' max_ttl"),
        "{}",
        long.text
    );
    let vended = fed.vend(access, "20m").await;
    assert_eq!(vended.status, StatusCode::OK, "{}", vended.text);

    // A second job of the same repository refreshes the same agent.
    let again = fed.exchange(&fed.github(&fed.ec, "acme/widgets")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(fed.agent_names().await, ["gh-acme-widgets"]);
    let shown = fed
        .api
        .get("/v1/admin/agents/gh-acme-widgets", &fed.admin)
        .await;
    assert_eq!(shown.body["trust"], "github", "{}", shown.text);
    // Asked for a narrower scope, the access token carries only that.
    let token = fed.github(&fed.ec, "acme/widgets");
    let narrowed = exchange(&fed.api, &token, JWT, Some("test:read")).await;
    assert_eq!(narrowed.body["scope"], "test:read", "{}", narrowed.text);
    let reader = narrowed.body["access_token"].as_str().unwrap_or_default();
    let status = fed.api.get("/v1/status", reader).await;
    assert_eq!(
        status.body["scopes"],
        json!(["test:read"]),
        "{}",
        status.text
    );

    let events = fed.server.audit_events().await;
    let federated: Vec<_> = events
        .iter()
        .filter(|e| e.action == "agent.federated")
        .collect();
    assert_eq!(federated.len(), 3, "created, then refreshed twice");
    assert_eq!(federated[0].details["refreshed"], false);
    assert_eq!(federated[1].details["refreshed"], true);
    assert_eq!(federated[0].details["trust"], "github");
    assert_eq!(federated[0].details["claims"]["repository"], "acme/widgets");
    let issued = events
        .iter()
        .find(|e| e.action == "credential.issued")
        .expect("the vend is audited");
    assert_eq!(
        issued.details["workload"]["sub"],
        "repo:acme/widgets:ref:refs/heads/main"
    );
    assert_eq!(issued.details["workload"]["iss"], fed.issuer.url());
    let exchanged = events
        .iter()
        .find(|e| e.action == "token.issued")
        .expect("the exchange is audited");
    assert_eq!(exchanged.details["workload"]["trust"], "github");
    assert_eq!(exchanged.details["scope"], "test");
    for event in &events {
        let text = serde_json::to_string(&event.details).unwrap_or_default();
        assert!(!text.contains(&token), "the job's token is never recorded");
    }

    // A federated agent's scopes come from its trust: it cannot ask for more.
    let amend = fed
        .api
        .post("/v1/request", access, json!({"scopes": ["other"]}))
        .await;
    assert_eq!(amend.status, StatusCode::FORBIDDEN, "{}", amend.text);
    assert!(
        amend.error().contains("federated by trust 'github'"),
        "{}",
        amend.text
    );

    // When the agent expires, it is removed and its leases are revoked.
    fed.server.clock.advance_seconds(600 + 1_800 + 1);
    fed.server.server().state().tasks().sweep_now().await;
    assert!(
        !fed.agent_names()
            .await
            .contains(&"gh-acme-widgets".to_owned()),
        "the expired federated agent is removed"
    );
    let lease = vended.body["id"].as_str().unwrap_or_default().to_owned();
    let shown = fed
        .api
        .get(&format!("/v1/admin/tokens/{lease}"), &fed.admin)
        .await;
    assert_eq!(shown.body["state"], "revoked", "{}", shown.text);

    // A Kubernetes service account of the `ci` namespace is admitted by the second trust.
    let claims = fed
        .issuer
        .kubernetes_claims("ci", "runner", "creddy", fed.now());
    let k8s = fed.exchange(&fed.issuer.sign(&fed.rsa, &claims)).await;
    assert_eq!(k8s.status, StatusCode::OK, "{}", k8s.text);
    assert_eq!(k8s.body["scope"], "test:read");

    // A GitLab job of a protected branch of an `acme` project, by the third trust.
    let claims = fed
        .issuer
        .gitlab_claims("acme/widgets", "main", "creddy", fed.now());
    let gitlab = fed.exchange(&fed.issuer.sign(&fed.ec, &claims)).await;
    assert_eq!(gitlab.status, StatusCode::OK, "{}", gitlab.text);
    assert!(
        fed.agent_names()
            .await
            .contains(&"gl-acme-widgets".to_owned())
    );
    let mut unprotected = claims.clone();
    unprotected["ref_protected"] = json!("false");
    let refused = fed.exchange(&fed.issuer.sign(&fed.ec, &unprotected)).await;
    let description = refused.body["error_description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("trust 'gitlab': claim 'ref_protected' is 'false'"),
        "every trust of the issuer says why: {description}"
    );
}

async fn forged_and_mismatched_tokens_are_refused_with_nothing_created(fed: Fed) {
    let now = fed.now();
    let github = |repository: &str, audience: &str| {
        fed.issuer
            .github_claims(repository, "refs/heads/main", audience, now)
    };
    let stranger = Issuer::start().await;
    let stranger_key = stranger.add_key(Alg::Rs256, true);
    let mut foreign_iss = github("acme/widgets", "creddy");
    foreign_iss["iss"] = json!(stranger.url());
    let mut expired = github("acme/widgets", "creddy");
    expired["exp"] = json!(now - 120);
    expired["iat"] = json!(now - 420);
    let mut long_lived = github("acme/widgets", "creddy");
    long_lived["exp"] = json!(now + 2 * 86_400);
    let mut tag = github("acme/widgets", "creddy");
    tag["ref"] = json!("refs/tags/v1");
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good = github("acme/widgets", "creddy");
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": fed.rsa})),
        b64(&good)
    );
    // HS256 with the issuer's public key as the HMAC secret (the classic confusion).
    let hmac_forgery = {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": fed.rsa});
        let input = format!("{}.{}", b64(&header), b64(&good));
        let secret = fed.issuer.public_jwk(&fed.rsa).to_string();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        use base64::Engine as _;
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    };
    // Another issuer's key, presenting the kid of one of ours.
    let borrowed_kid = stranger.sign_with_header(
        &stranger_key,
        &json!({"alg": "RS256", "typ": "JWT", "kid": fed.rsa}),
        &good,
    );
    let with_jku = fed.issuer.sign_with_header(
        &fed.rsa,
        &json!({"alg": "RS256", "typ": "JWT", "kid": fed.rsa, "jku": format!("{}/.well-known/jwks", stranger.url())}),
        &good,
    );
    // The ordinary agent a Kubernetes template would name.
    let taken = fed
        .api
        .create_agent(
            &fed.admin,
            "system-serviceaccount-ci-runner",
            &["test:read"],
        )
        .await;
    assert!(taken["token"].is_string(), "{taken}");
    let k8s = fed.issuer.kubernetes_claims("ci", "runner", "creddy", now);

    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        (
            "another repository",
            fed.issuer.sign(&fed.rsa, &github("acme/gadgets", "creddy")),
            "claim 'repository' is 'acme/gadgets'",
            Some("repository"),
        ),
        (
            "a tag instead of a branch",
            fed.issuer.sign(&fed.rsa, &tag),
            "claim 'ref'",
            Some("ref"),
        ),
        (
            "another audience",
            fed.issuer
                .sign(&fed.rsa, &github("acme/widgets", "sts.amazonaws.com")),
            "aud does not contain 'creddy'",
            Some("aud"),
        ),
        (
            "an expired token",
            fed.issuer.sign(&fed.rsa, &expired),
            "expired",
            None,
        ),
        (
            "a token valid for two days",
            fed.issuer.sign(&fed.rsa, &long_lived),
            "more than 24 hours",
            None,
        ),
        ("alg none", unsigned, "alg 'none' is not accepted", None),
        (
            "HS256 keyed with the public key",
            hmac_forgery,
            "alg 'HS256' is not accepted",
            None,
        ),
        (
            "a key not in the JWKS",
            fed.issuer.sign(&fed.rotated, &good),
            "no key",
            None,
        ),
        (
            "another issuer's key under our kid",
            borrowed_kid,
            "signature does not verify",
            None,
        ),
        ("a jku header", with_jku, "'jku' is not accepted", None),
        (
            "an issuer no trust names",
            stranger.sign(&stranger_key, &foreign_iss),
            "no [[trust]] names the issuer",
            None,
        ),
        (
            "a name held by an ordinary agent",
            fed.issuer.sign(&fed.ec, &k8s),
            "belongs to an agent this trust did not admit",
            Some("agent"),
        ),
    ];
    for (case, token, message, claim) in &cases {
        let answer = fed.exchange(token).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{case}: {}",
            answer.text
        );
        assert_eq!(
            answer.body["error"], "invalid_grant",
            "{case}: {}",
            answer.text
        );
        let description = answer.body["error_description"]
            .as_str()
            .unwrap_or_default();
        assert!(description.contains(message), "{case}: {description}");
        if let Some(claim) = claim {
            let refusals = exchange_refusals(&fed).await;
            assert!(
                refusals.iter().any(|d| d["claim"] == *claim),
                "{case}: no audited refusal names '{claim}': {refusals:?}"
            );
        }
    }
    assert_eq!(
        fed.agent_names().await,
        ["system-serviceaccount-ci-runner"],
        "no agent was created, the ordinary one is untouched"
    );
    let events = fed.server.audit_events().await;
    assert!(!events.iter().any(|e| e.action == "agent.federated"));
    assert!(!events.iter().any(|e| e.action == "token.issued"));
    for event in &events {
        let text = serde_json::to_string(&event.details).unwrap_or_default();
        assert!(!text.contains("eyJ"), "no token in the trail: {text}");
    }
    let wrong_type = exchange(
        &fed.api,
        &fed.github(&fed.rsa, "acme/widgets"),
        "urn:ietf:params:oauth:token-type:saml2",
        None,
    )
    .await;
    assert_eq!(
        wrong_type.body["error"], "invalid_request",
        "{}",
        wrong_type.text
    );
}

/// A trust removed from the file (SIGHUP) admits no new job, and the agents it admitted can
/// no longer vend: the `max_ttl` that bound them is gone, so nothing would bind them.
async fn a_trust_taken_out_of_the_configuration_admits_and_vends_nothing_more(fed: Fed) {
    let exchanged = fed.exchange(&fed.github(&fed.rsa, "acme/widgets")).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);
    let access = exchanged.body["access_token"].as_str().unwrap_or_default();
    let vended = fed.vend(access, "10m").await;
    assert_eq!(vended.status, StatusCode::OK, "{}", vended.text);

    std::fs::write(&fed.config, "").expect("the file is written");
    fed.server
        .server()
        .reload_rules()
        .await
        .expect("a file without trusts is read");
    let refused = fed.vend(access, "10m").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(
        refused
            .error()
            .contains("admitted by trust 'github', which the configuration no longer holds"),
        "{}",
        refused.text
    );
    let again = fed.exchange(&fed.github(&fed.rsa, "acme/widgets")).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text);
    assert!(
        again.text.contains("no [[trust]] names the issuer"),
        "{}",
        again.text
    );
    let issued = fed.server.audit_events().await;
    let issued = issued.iter().filter(|e| e.action == "credential.issued");
    assert_eq!(issued.count(), 1, "only the vend before the reload");
}

/// Someone who can write the database but not read `master.key` moves trusts between rows:
/// a workload admitted to an ordinary agent given a trust gets the trust's scopes, never the
/// agent's; a trust the configuration does not hold vends nothing; a federated agent whose
/// trust is cleared is not taken back by the next job.
async fn a_database_writer_moving_trusts_hands_a_workload_nothing_more(fed: Fed) {
    let broad = fed
        .api
        .create_agent(&fed.admin, "gh-acme-widgets", &["test", "admin:audit:read"])
        .await;
    assert!(broad["token"].is_string(), "{broad}");
    fed.server
        .execute_raw("UPDATE agents SET trust = 'github' WHERE name = 'gh-acme-widgets'")
        .await;
    let exchanged = fed.exchange(&fed.github(&fed.rsa, "acme/widgets")).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);
    assert_eq!(exchanged.body["scope"], "test", "{}", exchanged.text);
    let access = exchanged.body["access_token"].as_str().unwrap_or_default();
    let trail = fed.api.get("/v1/admin/audit", access).await;
    assert_eq!(trail.status, StatusCode::FORBIDDEN, "{}", trail.text);
    let shown = fed
        .api
        .get("/v1/admin/agents/gh-acme-widgets", &fed.admin)
        .await;
    assert_eq!(shown.body["scopes"], json!(["test"]), "{}", shown.text);

    let ghost = fed.api.create_agent(&fed.admin, "ghostly", &["test"]).await;
    let ghost_token = ghost["token"].as_str().unwrap_or_default();
    fed.server
        .execute_raw("UPDATE agents SET trust = 'ghost' WHERE name = 'ghostly'")
        .await;
    let refused = fed.vend(ghost_token, "10m").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(
        refused.error().contains("trust 'ghost'"),
        "{}",
        refused.text
    );

    fed.server
        .execute_raw("UPDATE agents SET trust = NULL WHERE name = 'gh-acme-widgets'")
        .await;
    let again = fed.exchange(&fed.github(&fed.ec, "acme/widgets")).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text);
    assert!(
        again
            .text
            .contains("belongs to an agent this trust did not admit"),
        "{}",
        again.text
    );
    let federated = fed.server.audit_events().await;
    let federated = federated.iter().filter(|e| e.action == "agent.federated");
    assert_eq!(federated.count(), 1, "only the first job was admitted");
}

async fn rotated_keys_are_fetched_once_and_redirects_are_not_followed(fed: Fed) {
    let first = fed.exchange(&fed.github(&fed.rsa, "acme/widgets")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let fetched = fed.issuer.jwks_fetches();
    assert_eq!(fetched, 1);
    let cached = fed.exchange(&fed.github(&fed.ec, "acme/widgets")).await;
    assert_eq!(cached.status, StatusCode::OK, "{}", cached.text);
    assert_eq!(fed.issuer.jwks_fetches(), 1, "the keys are kept");

    // The issuer rotates: a token under the new kid makes creddy fetch once more, but not
    // more often than every 30 s (forged kids cannot make it hammer the issuer).
    fed.issuer.publish(&fed.rotated);
    let too_soon = fed
        .exchange(&fed.github(&fed.rotated, "acme/widgets"))
        .await;
    assert_eq!(
        too_soon.status,
        StatusCode::BAD_REQUEST,
        "{}",
        too_soon.text
    );
    assert_eq!(fed.issuer.jwks_fetches(), 1);
    fed.server.clock.advance_seconds(31);
    let rotated = fed
        .exchange(&fed.github(&fed.rotated, "acme/widgets"))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_eq!(fed.issuer.jwks_fetches(), 2, "one refetch for the new kid");
    fed.server.clock.advance_seconds(31);
    let unknown = fed
        .exchange(&fed.github(&fed.issuer.add_key(Alg::EdDsa, false), "acme/widgets"))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    assert_eq!(fed.issuer.jwks_fetches(), 3);

    // A retired key stops working once the keys are fetched again.
    fed.issuer.retire(&fed.rsa);
    fed.server.clock.advance_seconds(301);
    let retired = fed.exchange(&fed.github(&fed.rsa, "acme/widgets")).await;
    assert_eq!(retired.status, StatusCode::BAD_REQUEST, "{}", retired.text);

    // Keys behind a redirect are not fetched.
    let mut server = fed.server;
    server.stop().await;
    server.settings.trusts = trusts_set(fed.issuer.url(), &fed.issuer.redirecting_jwks_url());
    server.restart().await;
    let api = Api::new(&server.url());
    let now = server.clock.now().as_millis() / 1000;
    let claims = fed
        .issuer
        .github_claims("acme/widgets", "refs/heads/main", "creddy", now);
    let redirected = exchange(&api, &fed.issuer.sign(&fed.ec, &claims), JWT, None).await;
    assert_eq!(
        redirected.status,
        StatusCode::BAD_REQUEST,
        "{}",
        redirected.text
    );
    let description = redirected.body["error_description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("redirects are not followed"),
        "{description}"
    );
}

/// A token PyJWT minted, with its key given as a `jwks_file` (the air-gapped form).
#[tokio::test]
async fn a_token_minted_by_pyjwt_is_admitted_through_a_jwks_file() {
    let issuer = "https://ci.example.com";
    let dir = tempfile::TempDir::new().expect("a temp dir");
    let jwks = dir.path().join("jwks.json");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/mint.py");
    let clock = creddy_core::ManualClock::starting_now();
    let now = clock.now().as_millis() / 1000;
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args([issuer, &jwks.display().to_string(), &now.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for this test: {e}"));
    assert!(
        output.status.success(),
        "PyJWT failed (installed? `pip install 'PyJWT[crypto]'`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let mut trusts = trusts(issuer, "");
    for trust in &mut trusts {
        trust.keys = creddy_core::trust::KeySource::File(jwks.clone());
    }
    let server = TestServer::start_with(Dialect::Sqlite, |s| {
        s.trusts = creddy_core::trust::TrustSet::new(trusts).expect("valid");
    })
    .await;
    let api = Api::new(&server.url());
    let answer = exchange(&api, &token, JWT, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["scope"], "test");
    // One byte of the signature changed: refused.
    let mut forged = token.clone().into_bytes();
    let middle = forged.len() - 20;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    let refused = exchange(&api, &forged, JWT, None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
}

//! Minting, narrowing, revoking and error mapping, end to end through the host.

use std::sync::Arc;
use std::time::Duration;

use creddy_core::ManualClock;
use creddy_plugin::host::{HostError, LaunchSpec, PluginProcess};
use creddy_plugin::protocol::{AgentRef, ErrorKind, GetCredentialParams};
use creddy_testkit::github::GithubStandin;
use creddy_testkit::plugins::{install_as, workspace_binary};
use serde_json::{Value, json};
use tempfile::TempDir;

struct Github {
    standin: GithubStandin,
    /// The stand-in's clock.
    clock: Arc<ManualClock>,
    /// The App's installation on `acme`.
    installation: u64,
    _dir: TempDir,
    binary: std::path::PathBuf,
    sha256: String,
    http: reqwest::Client,
}

/// A stand-in with `acme/widgets` and `acme/gadgets` (installed), `acme/vault` (not in the
/// installation) and the App installed on `acme` with contents, pull requests and issues.
async fn github() -> Github {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = Arc::new(ManualClock::starting_now());
    let standin = GithubStandin::start(clock.clone()).await;
    standin.add_repository("acme", "widgets", &[("README.md", "# widgets\n")]);
    standin.add_repository("acme", "gadgets", &[("README.md", "# gadgets\n")]);
    standin.add_repository("acme", "vault", &[("secret.txt", "nope\n")]);
    let installation = standin.install(
        "acme",
        Some(&["widgets", "gadgets"]),
        &[
            ("contents", "write"),
            ("metadata", "read"),
            ("pull_requests", "write"),
            ("issues", "write"),
        ],
    );
    let dir = TempDir::new().expect("TempDir is created");
    let installed = install_as(
        &workspace_binary("creddy-github", "creddy-github"),
        &dir.path().join("plugins"),
        "github",
    );
    Github {
        standin,
        clock,
        installation,
        _dir: dir,
        binary: installed.binary,
        sha256: installed.sha256,
        http: reqwest::Client::new(),
    }
}

impl Github {
    fn config(&self) -> Value {
        let app = self.standin.app();
        json!({"app_id": app.id.to_string(), "private_key": app.private_key_pem,
            "base_url": self.standin.url()})
    }

    async fn plugin(&self, config: Value) -> Result<PluginProcess, HostError> {
        let mut spec =
            LaunchSpec::new("github", self.binary.clone(), &self.sha256, config, "0.1.0");
        spec.timeout_cap = Some(Duration::from_secs(20));
        PluginProcess::start(spec).await
    }

    async fn configured(&self) -> PluginProcess {
        self.plugin(self.config()).await.expect("the plugin starts")
    }

    /// `GET` of `acme/{repo}`'s README with `token`.
    async fn readme(&self, repo: &str, token: &str) -> (u16, Value) {
        let path = format!("/repos/acme/{repo}/contents/README.md");
        self.call(reqwest::Method::GET, &path, token, Value::Null)
            .await
    }

    /// `method path` with `token`, as a repository client would.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.standin.url()))
            .header("Authorization", format!("token {token}"))
            .json(&body)
            .send()
            .await
            .expect("the stand-in answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn request(scopes: &[&str], lease: &str) -> GetCredentialParams {
    GetCredentialParams {
        agent: AgentRef {
            id: "ag_1".into(),
            name: "coder".into(),
            scopes: vec!["github".into()],
        },
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ttl: 600,
        lease_id: lease.into(),
        parameters: Default::default(),
    }
}

fn plugin_error<T: std::fmt::Debug>(
    result: Result<T, HostError>,
) -> (ErrorKind, String, Option<String>, Option<u64>) {
    match result {
        Err(HostError::Plugin {
            kind,
            message,
            remedy,
            retry_after,
            ..
        }) => (kind, message, remedy, retry_after),
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_narrowed_to_one_repository_works_there_only_and_is_deleted_at_revocation() {
    let github = github().await;
    let plugin = github.configured().await;
    assert_eq!(
        plugin.validate().await.expect("the App is valid"),
        Vec::<String>::new()
    );
    assert!(
        plugin.started().hello.proxy.is_none(),
        "no proxy mode for GitHub"
    );
    let (kind, message, _, _) = plugin_error(
        plugin
            .proxy_target(creddy_plugin::protocol::Inject::Lease)
            .await,
    );
    assert_eq!(kind, ErrorKind::InvalidRequest, "{message}");
    assert!(message.contains("does not serve proxy mode"), "{message}");
    let credential = plugin
        .get_credential(&request(&["github:acme/widgets:contents:write"], "cred_01"))
        .await
        .expect("a token is minted");
    let token = credential.value.expose().clone();
    assert!(token.starts_with("ghs_"), "{token}");
    let minted = github.standin.tokens()[&token].clone();
    assert_eq!(
        minted.repositories,
        Some(["acme/widgets".to_owned()].into()),
        "narrowed to the one repository"
    );
    assert_eq!(
        minted.permissions,
        [
            ("contents".to_owned(), "write".to_owned()),
            ("metadata".to_owned(), "read".to_owned())
        ]
        .into()
    );
    assert_eq!(credential.metadata["repositories"], "acme/widgets");
    assert_eq!(
        credential.metadata["permissions"],
        "contents:write,metadata:read"
    );
    let names: Vec<&str> = credential.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["GH_TOKEN", "GITHUB_TOKEN"]);

    // It reads and writes its repository, and does not see the other one.
    let (read, file) = github.readme("widgets", &token).await;
    assert_eq!(read, 200, "{file}");
    let (wrote, _) = github
        .call(
            reqwest::Method::PUT,
            "/repos/acme/widgets/contents/notes.txt",
            &token,
            json!({"message": "notes", "content": "aGVsbG8K"}),
        )
        .await;
    assert_eq!(wrote, 201);
    assert_eq!(
        github
            .standin
            .file("acme", "widgets", "notes.txt")
            .as_deref(),
        Some("hello\n")
    );
    let (other, body) = github.readme("gadgets", &token).await;
    assert_eq!((other, body["message"].as_str()), (404, Some("Not Found")));

    // A read-only token cannot write.
    let reader = plugin
        .get_credential(&request(&["github:acme/gadgets:contents"], "cred_02"))
        .await
        .expect("a token is minted");
    let (refused, body) = github
        .call(
            reqwest::Method::PUT,
            "/repos/acme/gadgets/contents/x.txt",
            reader.value.expose(),
            json!({"message": "x", "content": "eA=="}),
        )
        .await;
    assert_eq!(
        (refused, body["message"].as_str()),
        (403, Some("Resource not accessible by integration"))
    );

    // The installation was looked up once for both tokens of `acme`.
    let lookups = github
        .standin
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/installation") && l.method == "GET")
        .count();
    assert_eq!(lookups, 1, "the installation of acme is remembered");

    // Revocation deletes it upstream; a second one finds it gone.
    let revoked = plugin
        .revoke_credential(
            credential.external_id.clone(),
            "cred_01",
            request(&[], "cred_01").agent,
        )
        .await
        .expect("revoked");
    assert!(!revoked.already_gone);
    assert!(github.standin.tokens()[&token].revoked);
    let (gone, body) = github.readme("widgets", &token).await;
    assert_eq!(
        (gone, body["message"].as_str()),
        (401, Some("Bad credentials"))
    );
    let again = plugin
        .revoke_credential(
            credential.external_id,
            "cred_01",
            request(&[], "cred_01").agent,
        )
        .await
        .expect("revoked");
    assert!(again.already_gone, "a deleted token counts as revoked");
    // GitHub ends a token after its hour, revoked or not.
    github.clock.advance_seconds(3_601);
    let (expired, body) = github.readme("gadgets", reader.value.expose()).await;
    assert_eq!(
        (expired, body["message"].as_str()),
        (401, Some("Bad credentials"))
    );
    let log = github.standin.log();
    assert!(
        log.iter()
            .any(|l| l.method == "DELETE" && l.path == "/installation/token" && l.status == 204),
        "{log:?}"
    );
}

#[tokio::test]
async fn github_refusals_become_messages_with_remedies() {
    let github = github().await;
    let plugin = github.configured().await;

    let (kind, message, _, _) = plugin_error(
        plugin
            .get_credential(&request(&["github:acme/vault"], "cred_01"))
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamNotFound, "{message}");
    assert!(message.contains("installation not found"), "{message}");

    let (kind, message, remedy, _) = plugin_error(
        plugin
            .get_credential(&request(
                &["github:acme/widgets:workflows:write"],
                "cred_02",
            ))
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamPermission, "{message}");
    assert!(
        message.starts_with("permission not granted to the App"),
        "{message}"
    );
    assert!(remedy.unwrap_or_default().contains("Permissions"));

    let (kind, message, _, _) = plugin_error(
        plugin
            .get_credential(&request(
                &[
                    "github:acme/widgets:contents:read",
                    "github:acme/gadgets:contents:write",
                ],
                "cred_03",
            ))
            .await,
    );
    assert_eq!(kind, ErrorKind::ScopeNotSupported);
    assert!(
        message.contains("contents:write on acme/widgets"),
        "{message}"
    );

    let (kind, message, _, _) = plugin_error(
        plugin
            .get_credential(&request(&["github"], "cred_04"))
            .await,
    );
    assert_eq!(kind, ErrorKind::OrgNotConfigured, "{message}");

    // With the installation configured, a repository outside it is GitHub's 422.
    let installation = github.standin.tokens().len();
    assert_eq!(installation, 0, "nothing was minted by the refusals");
    let mut config = github.config();
    config["installation_id"] = json!(github.installation);
    let pinned = github.plugin(config).await.expect("starts");
    assert_eq!(
        pinned.validate().await.expect("valid"),
        Vec::<String>::new()
    );
    let (kind, message, _, _) = plugin_error(
        pinned
            .get_credential(&request(&["github:acme/vault"], "cred_05"))
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamRejected, "{message}");
    assert!(
        message.starts_with("repository not in the installation"),
        "{message}"
    );
    let all = pinned
        .get_credential(&request(&["github"], "cred_06"))
        .await
        .expect("every repository of the installation");
    assert_eq!(all.metadata["repositories"], "*");

    github.standin.set_rate_limited(true);
    let (kind, _, _, retry_after) = plugin_error(
        plugin
            .get_credential(&request(&["github:acme/widgets"], "cred_07"))
            .await,
    );
    assert_eq!(
        (kind, retry_after),
        (ErrorKind::UpstreamRateLimited, Some(30))
    );
    github.standin.set_rate_limited(false);

    // Another App's key, and another App's id.
    let stranger = GithubStandin::start(Arc::new(ManualClock::starting_now())).await;
    let mut config = github.config();
    config["private_key"] = json!(stranger.app().private_key_pem);
    let foreign = github.plugin(config).await.expect("starts");
    let (kind, message, remedy, _) = plugin_error(foreign.validate().await);
    assert_eq!(kind, ErrorKind::UpstreamAuth, "{message}");
    assert!(
        message.starts_with("invalid GitHub App credentials"),
        "{message}"
    );
    assert!(remedy.unwrap_or_default().contains("private_key"));
    let mut config = github.config();
    config["app_id"] = json!("999");
    let (kind, message, _, _) = plugin_error(
        github
            .plugin(config)
            .await
            .expect("starts")
            .validate()
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamAuth, "{message}");
    assert!(message.contains("Integration not found"), "{message}");
}

#[tokio::test]
async fn a_bad_configuration_is_refused_at_start_without_quoting_the_key() {
    let github = github().await;
    let cases = [
        (json!({"private_key": "x"}), "app_id"),
        (
            json!({"app_id": "1", "private_key": "ghp_not_a_pem_key"}),
            "is not a PEM private key",
        ),
        (
            json!({"app_id": "1", "private_key": github.standin.app().private_key_pem, "base_url": "http://github.example.com"}),
            "http:// only to a loopback host",
        ),
        (
            json!({"app_id": "1", "private_key": github.standin.app().private_key_pem, "base_url": "https://me:pw@github.example.com"}),
            "user name or password",
        ),
        (
            json!({"app_id": "1", "private_key": github.standin.app().private_key_pem, "default_permissions": ["contents:admin"]}),
            "default_permissions",
        ),
        (
            json!({"app_id": "1", "private_key": github.standin.app().private_key_pem, "installation_id": -3}),
            "installation_id",
        ),
    ];
    for (config, expected) in cases {
        let refused = github.plugin(config.clone()).await.expect_err("refused");
        let text = refused.to_string();
        assert!(text.contains(expected), "{config}: {text}");
        let key_material = github
            .standin
            .app()
            .private_key_pem
            .lines()
            .nth(1)
            .map(str::to_owned);
        assert!(
            !text.contains("ghp_") && !text.contains(&key_material.unwrap_or_default()),
            "{text}"
        );
    }
}

/// PyGithub (PyPI), which nobody on the team wrote, authenticates as the App against the
/// stand-in, mints an installation token and uses it: the stand-in cannot drift from what a
/// real client sends and expects unnoticed.
#[tokio::test]
async fn pygithub_accepts_the_stand_in() {
    let github = github().await;
    let app = github.standin.app();
    let key_file = github._dir.path().join("app.pem");
    std::fs::write(&key_file, &app.private_key_pem).expect("the key is written");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pygithub.py");
    let args = [
        script.display().to_string(),
        github.standin.url().to_owned(),
        app.id.to_string(),
        key_file.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(&args).output()
    })
    .await
    .expect("the task ends")
    .unwrap_or_else(|e| panic!("python3 is required for this test: {e}"));
    assert!(
        output.status.success(),
        "PyGithub failed (installed? `pip install PyGithub==2.10.0`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("PyGithub printed JSON");
    assert_eq!(seen["app"], "creddy-test");
    assert_eq!(seen["installation"], github.installation);
    assert_eq!(seen["repository"], "acme/widgets");
    assert_eq!(seen["readme"], "# widgets\n");
    assert_eq!(
        seen["vault"], 404,
        "the token does not reach another repository"
    );
    let token = seen["token"].as_str().unwrap_or_default();
    let minted = github.standin.tokens()[token].clone();
    assert_eq!(
        minted.permissions,
        [
            ("contents".to_owned(), "write".to_owned()),
            ("metadata".to_owned(), "read".to_owned())
        ]
        .into()
    );
    assert_eq!(
        github
            .standin
            .file("acme", "widgets", "from-pygithub.txt")
            .as_deref(),
        Some("again\n"),
        "PyGithub's update, with the sha it read back, was applied"
    );
    let log = github.standin.log();
    assert!(
        log.iter()
            .all(|l| l.status < 400 || l.path.contains("vault")),
        "PyGithub's requests were all accepted: {log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.caller == "app" && l.path.ends_with("/access_tokens"))
    );
}

/// A hostile or misconfigured upstream: a redirect is not followed with the App JWT attached
/// (the stand-in behind it sees nothing), and a message reflecting the credential it was
/// sent is withheld.
#[tokio::test]
async fn a_hostile_upstream_gets_no_redirect_followed_and_no_credential_reflected() {
    let github = github().await;
    let target = github.standin.url().to_owned();
    let hostile = axum::Router::new()
        .route(
            "/redirect/{*rest}",
            axum::routing::any(move |uri: axum::http::Uri| {
                let target = target.clone();
                async move {
                    let rest = uri.path().trim_start_matches("/redirect");
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [("location", format!("{target}{rest}"))],
                    )
                }
            }),
        )
        .route(
            "/reflect/{*rest}",
            axum::routing::any(|headers: axum::http::HeaderMap| async move {
                let sent = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"message": format!("Bad credentials: {sent}")})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, hostile).await });

    let mut config = github.config();
    config["base_url"] = json!(format!("http://{addr}/redirect"));
    let redirected = github.plugin(config).await.expect("starts");
    let (kind, message, _, _) = plugin_error(redirected.validate().await);
    assert_eq!(kind, ErrorKind::UpstreamUnavailable, "{message}");
    assert!(
        message.contains("redirect, which is not followed"),
        "{message}"
    );
    assert!(
        github.standin.log().is_empty(),
        "{:?}",
        github.standin.log()
    );

    let mut config = github.config();
    config["base_url"] = json!(format!("http://{addr}/reflect"));
    let reflected = github.plugin(config).await.expect("starts");
    let (kind, message, _, _) = plugin_error(reflected.validate().await);
    assert_eq!(kind, ErrorKind::UpstreamAuth, "{message}");
    assert!(
        !message.contains("eyJ"),
        "the App JWT is not reflected: {message}"
    );
    assert!(message.contains("withheld"), "{message}");
}

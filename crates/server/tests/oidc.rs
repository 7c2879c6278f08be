//! The OIDC provider (issue #7, parts 1 to 3): checked by a relying party nobody here wrote
//! (Python's PyJWT, `tests/relying_party/check.py`) before and after a key rotation, and the
//! checks creddy applies when a JWT is used as an agent bearer.

use creddy_testkit::http::{Answer, Api};
use creddy_testkit::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

creddy_testkit::dialects!(TestServer::start =>
    a_third_party_relying_party_verifies_tokens_before_and_after_rotation,
    access_tokens_work_as_agent_bearers_and_nothing_else_does,
    keys_rotate_on_schedule_and_retire_after_the_grace,
    a_cached_client_is_never_served_after_its_agent_changed_elsewhere,
);

/// The token endpoint remembers the clients it authenticated (no store read before signing);
/// another node (here: the database, written directly) removes, widens, narrows or rotates
/// the agent, and the very next token request sees it: a widened scope is granted, a dropped
/// one is not, a replaced secret and a removed agent get 401 and no `token.issued` event.
async fn a_cached_client_is_never_served_after_its_agent_changed_elsewhere(server: TestServer) {
    let (api, id, secret) = reader_client(&server, "cached").await;
    let basic = Some((id.as_str(), secret.as_str()));
    let grant = |scope: &str| format!("grant_type=client_credentials&scope={scope}");
    let first = token(&api, &grant("test:read"), basic).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        token(&api, &grant("test"), basic).await.status,
        StatusCode::BAD_REQUEST,
        "not granted yet"
    );

    server
        .execute_raw("UPDATE agents SET scopes = '[\"test\"]' WHERE name = 'cached'")
        .await;
    let widened = token(&api, &grant("test"), basic).await;
    assert_eq!(
        widened.status,
        StatusCode::OK,
        "a widened grant is seen: {}",
        widened.text
    );
    assert_eq!(widened.body["scope"], "test");

    server
        .execute_raw("UPDATE agents SET scopes = '[\"test:read\"]' WHERE name = 'cached'")
        .await;
    let narrowed = token(&api, "grant_type=client_credentials", basic).await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text);
    assert_eq!(
        narrowed.body["scope"], "test:read",
        "a narrowed grant is seen"
    );

    let issued_before = issued_tokens(&server).await;
    server
        .execute_raw("UPDATE agents SET client_secret_hash = 'replaced' WHERE name = 'cached'")
        .await;
    let rotated = token(&api, "grant_type=client_credentials", basic).await;
    assert_eq!(rotated.status, StatusCode::UNAUTHORIZED, "{}", rotated.text);
    server
        .execute_raw("DELETE FROM agents WHERE name = 'cached'")
        .await;
    let removed = token(&api, "grant_type=client_credentials", basic).await;
    assert_eq!(removed.status, StatusCode::UNAUTHORIZED, "{}", removed.text);
    assert_eq!(
        issued_tokens(&server).await,
        issued_before,
        "no token.issued for a rotated or removed client"
    );
}

/// A request decided again from the store (its cached client lacked the scope) counts once
/// against `limits.token_per_client`, not twice.
#[tokio::test]
async fn a_token_request_decided_again_counts_once_against_the_rate() {
    let server = TestServer::start_with(creddy_testkit::store::Dialect::Sqlite, |s| {
        s.limits.token_per_client = creddy_core::policy::Rate {
            count: 3,
            window_seconds: 60,
        };
    })
    .await;
    let (api, id, secret) = reader_client(&server, "counted").await;
    let basic = Some((id.as_str(), secret.as_str()));
    let grant = |scope: &str| format!("grant_type=client_credentials&scope={scope}");
    assert_eq!(
        token(&api, &grant("test:read"), basic).await.status,
        StatusCode::OK
    );
    server
        .execute_raw("UPDATE agents SET scopes = '[\"test\"]' WHERE name = 'counted'")
        .await;
    let again = token(&api, &grant("test"), basic).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "decided again: {}",
        again.text
    );
    let third = token(&api, &grant("test:read"), basic).await;
    assert_eq!(
        third.status,
        StatusCode::OK,
        "the third of three: {}",
        third.text
    );
    let fourth = token(&api, &grant("test:read"), basic).await;
    assert_ne!(
        fourth.status,
        StatusCode::OK,
        "the limit holds: {}",
        fourth.text
    );
}

/// The test backend, and an agent `name` granted `test:read`: the API client, and the
/// agent's OIDC client id and secret.
async fn reader_client(server: &TestServer, name: &str) -> (Api, String, String) {
    server.install_test_plugin("test");
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let upstream = server.scratch().join("upstream");
    api.add_test_backend(&admin, "test", MASTER_KEY, &upstream)
        .await;
    let created = api.create_agent(&admin, name, &["test:read"]).await;
    let (id, secret) = (
        text(&created["oidc"]["client_id"]),
        text(&created["oidc"]["client_secret"]),
    );
    (api, id, secret)
}

async fn issued_tokens(server: &TestServer) -> usize {
    server
        .audit_events()
        .await
        .iter()
        .filter(|e| e.action == "token.issued")
        .count()
}

const MASTER_KEY: &str = "master-key-of-the-test-upstream";

/// Runs the relying party; returns its JSON report.
async fn relying_party(
    issuer: &str,
    client_id: &str,
    secret: &str,
    earlier: Option<&str>,
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/relying_party/check.py");
    let mut args = vec![
        script.to_owned(),
        issuer.to_owned(),
        client_id.to_owned(),
        secret.to_owned(),
    ];
    args.extend(earlier.map(str::to_owned));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(&args).output()
    })
    .await
    .expect("the blocking task ends")
    .unwrap_or_else(|e| panic!("python3 is required for this test: {e}"));
    assert!(
        output.status.success(),
        "the relying party failed (PyJWT installed? `pip install 'PyJWT[crypto]'`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the bytes are JSON of the expected shape")
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

async fn a_third_party_relying_party_verifies_tokens_before_and_after_rotation(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let created = api
        .create_agent(&admin, "federated", &["test", "admin:audit:read"])
        .await;
    let (client_id, secret) = (
        text(&created["oidc"]["client_id"]),
        text(&created["oidc"]["client_secret"]),
    );
    let issuer = server.url();

    let before = relying_party(&issuer, &client_id, &secret, None).await;
    assert_eq!(before["typ"], "at+jwt");
    assert_eq!(before["algs"], json!(["EdDSA"]));
    assert_eq!(before["sub"], created["id"]);
    assert_eq!(before["id_token_sub"], created["id"]);
    assert_eq!(before["agent_name"], "federated");
    assert_eq!(before["scope"], "admin:audit:read test");
    let first_kid = text(&before["kids"][0]);

    let rotated = api
        .post("/v1/admin/keys/rotate", &admin, json!({"grace": "2h"}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_eq!(rotated.body["previous"], json!(first_kid));
    let earlier = text(&before["access_token"]);
    let after = relying_party(&issuer, &client_id, &secret, Some(&earlier)).await;
    assert_eq!(
        after["kids"].as_array().map(Vec::len),
        Some(2),
        "the old key is in grace"
    );
    assert_eq!(
        after["earlier_ok"], true,
        "tokens of the old key verify during the grace"
    );
    assert_ne!(
        jwt_kid(&text(&after["access_token"])),
        first_kid,
        "new tokens use the new key"
    );

    // A relying party that cannot verify EdDSA gets an ES256 key.
    let es256 = api
        .post(
            "/v1/admin/keys/rotate",
            &admin,
            json!({"alg": "ES256", "grace": "2h"}),
        )
        .await;
    assert_eq!(es256.body["alg"], "ES256", "{}", es256.text);
    let p256 = relying_party(&issuer, &client_id, &secret, Some(&earlier)).await;
    assert_eq!(p256["algs"], json!(["ES256", "EdDSA"]), "{p256}");
    assert_eq!(p256["earlier_ok"], true);
    assert_eq!(
        jwt_kid(&text(&p256["access_token"])),
        text(&es256.body["kid"])
    );
    assert_eq!(
        api.get("/v1/status", &text(&p256["access_token"]))
            .await
            .status,
        StatusCode::OK,
        "an ES256 access token is an agent bearer too"
    );

    // And one that wants RSA gets a 3072-bit RS256 key, signed through ring.
    let rs256 = api
        .post(
            "/v1/admin/keys/rotate",
            &admin,
            json!({"alg": "RS256", "grace": "2h"}),
        )
        .await;
    assert_eq!(rs256.body["alg"], "RS256", "{}", rs256.text);
    let rsa = relying_party(&issuer, &client_id, &secret, Some(&earlier)).await;
    assert_eq!(rsa["algs"], json!(["ES256", "EdDSA", "RS256"]), "{rsa}");
    assert_eq!(
        jwt_kid(&text(&rsa["access_token"])),
        text(&rs256.body["kid"])
    );
    let jwks = api.get("/.well-known/jwks.json", "").await;
    let rsa_jwk = jwks.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["alg"] == "RS256")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rsa_jwk["kty"], "RSA");
    assert_eq!(
        text(&rsa_jwk["n"]).len(),
        512,
        "a 3072-bit modulus (384 bytes) in base64url"
    );
    assert_eq!(
        api.get("/v1/status", &text(&rsa["access_token"]))
            .await
            .status,
        StatusCode::OK,
        "an RS256 access token is an agent bearer too"
    );

    server.clock.advance_seconds(2 * 3_600 + 1);
    server.server().state().tasks().sweep_now().await;
    // The server's clock is now ahead of the relying party's, so only the earlier token is
    // checked against the keys published now.
    let retired = relying_party(&issuer, "-", "-", Some(&earlier)).await;
    assert_eq!(
        retired["kids"].as_array().map(Vec::len),
        Some(1),
        "{retired}"
    );
    assert_eq!(
        retired["earlier_ok"], false,
        "a retired key leaves the JWKS"
    );
    let keys = api.get("/v1/admin/keys", &admin).await;
    let states: Vec<String> = keys
        .body
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| text(&k["state"]))
        .collect();
    assert_eq!(
        states,
        ["current", "retired", "retired", "retired"],
        "{}",
        keys.text
    );
    assert!(
        !keys.text.contains("private"),
        "private keys never leave the server"
    );
    let actions: Vec<String> = server
        .audit_events()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["token.issued", "key.rotated", "key.retired"] {
        assert!(actions.iter().any(|a| a == action), "{action}");
    }
}

fn jwt_kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap_or_default();
    let header: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    text(&header["kid"])
}

async fn token(api: &Api, form: &str, basic: Option<(&str, &str)>) -> Answer {
    let mut request = api
        .request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    api.send(request).await
}

async fn access_tokens_work_as_agent_bearers_and_nothing_else_does(server: TestServer) {
    server.install_test_plugin("test");
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let upstream = server.scratch().join("upstream");
    assert_eq!(
        api.add_test_backend(&admin, "test", MASTER_KEY, &upstream)
            .await
            .status,
        StatusCode::OK
    );
    let created = api
        .create_agent(&admin, "jwt-user", &["test", "test:read"])
        .await;
    let (client_id, secret) = (
        text(&created["oidc"]["client_id"]),
        text(&created["oidc"]["client_secret"]),
    );
    let vend_token = text(&created["token"]);

    let discovery = api.get("/.well-known/openid-configuration", "").await;
    assert_eq!(
        discovery.body["token_endpoint"],
        json!(format!("{}/oauth/token", server.url()))
    );
    assert_eq!(
        discovery.body["scopes_supported"],
        json!(["openid"]),
        "no backend names for unauthenticated callers"
    );
    assert!(discovery.body.get("authorization_endpoint").is_none());
    assert_eq!(
        discovery.body["grant_types_supported"],
        json!(["client_credentials"]),
        "no token exchange without a [[trust]]"
    );

    // client_secret_post with a narrower scope; the vend token as a secret works too.
    let posted = token(
        &api,
        &format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}&scope=openid+test%3Aread"),
        None,
    )
    .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text);
    assert_eq!(posted.body["scope"], "openid test:read");
    assert_eq!(posted.header("cache-control"), Some("no-store"));
    let access = text(&posted.body["access_token"]);
    assert_eq!(
        token(
            &api,
            "grant_type=client_credentials",
            Some(("jwt-user", &vend_token))
        )
        .await
        .status,
        StatusCode::OK
    );

    // The access token is an agent bearer, narrowed to its scope.
    let me = api.get("/v1/status", &access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["scopes"], json!(["test:read"]));
    let info = api.get("/oauth/userinfo", &access).await;
    assert_eq!(info.body["client_id"], json!(client_id));
    let narrow = api
        .call(
            Method::POST,
            "/v1/credentials/test?scope=test:read",
            Some(&access),
            None,
        )
        .await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.text);
    let wide = api
        .call(
            Method::POST,
            "/v1/credentials/test?scope=test",
            Some(&access),
            None,
        )
        .await;
    assert_eq!(
        wide.code(),
        "scope_denied",
        "the token's scope narrows the grants"
    );

    // Refusals.
    let wrong = token(
        &api,
        "grant_type=client_credentials",
        Some((&client_id, "cks_wrong")),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    assert!(wrong.header("www-authenticate").is_some());
    assert_eq!(
        token(&api, "grant_type=password", Some((&client_id, &secret)))
            .await
            .body["error"],
        "unsupported_grant_type"
    );
    assert_eq!(
        token(
            &api,
            "grant_type=client_credentials&scope=other",
            Some((&client_id, &secret))
        )
        .await
        .body["error"],
        "invalid_scope"
    );
    let id_token = text(&posted.body["id_token"]);
    assert_eq!(
        api.get("/v1/status", &id_token).await.status,
        StatusCode::UNAUTHORIZED,
        "an ID token is not an access token"
    );
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(
        api.get("/v1/status", &parts.join(".")).await.status,
        StatusCode::UNAUTHORIZED,
        "a tampered token fails its signature"
    );
    server.clock.advance_seconds(3_600 + 61);
    assert_eq!(
        api.get("/v1/status", &access).await.status,
        StatusCode::UNAUTHORIZED,
        "an expired token"
    );
    let fresh = token(
        &api,
        "grant_type=client_credentials",
        Some((&client_id, &secret)),
    )
    .await;
    let fresh = text(&fresh.body["access_token"]);
    api.delete("/v1/admin/agents/jwt-user", &admin).await;
    assert_eq!(
        api.get("/v1/status", &fresh).await.status,
        StatusCode::UNAUTHORIZED,
        "the agent must still exist"
    );
}

async fn keys_rotate_on_schedule_and_retire_after_the_grace(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let states = || async {
        api.get("/v1/admin/keys", &admin)
            .await
            .body
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| text(&k["state"]))
            .collect::<Vec<_>>()
    };
    assert_eq!(states().await, ["current"]);
    server.clock.advance_seconds(29 * 86_400);
    server.server().state().tasks().sweep_now().await;
    assert_eq!(
        states().await,
        ["current"],
        "not before oidc.rotate_every (30d)"
    );
    server.clock.advance_seconds(86_400);
    server.server().state().tasks().sweep_now().await;
    assert_eq!(states().await, ["current", "grace"]);
    server.clock.advance_seconds(86_400);
    server.server().state().tasks().sweep_now().await;
    assert_eq!(
        states().await,
        ["current", "retired"],
        "after oidc.rotation_grace (24h)"
    );
    let jwks = api.get("/.well-known/jwks.json", "").await;
    assert_eq!(jwks.body["keys"].as_array().map(Vec::len), Some(1));
    let rotations = server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "key.rotated")
        .count();
    assert_eq!(rotations, 2, "the first key and the scheduled rotation");
}

//! Agents through the admin API, and agents using their own tokens.

use creddy_testkit::http::Api;
use creddy_testkit::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

creddy_testkit::dialects!(TestServer::start =>
    an_admin_creates_an_agent_that_sees_its_scopes,
    bad_names_scopes_and_lifetimes_are_refused_with_the_reason,
    names_are_unique_in_any_case,
    tokens_are_checked_and_admin_scopes_are_enforced,
    an_expired_agent_is_refused_at_once_and_removed_by_the_reaper,
    removing_an_agent_revokes_its_token_and_is_audited,
);

creddy_testkit::dialects!(idle: two_idle_days =>
    agents_idle_for_the_inactivity_days_are_removed_with_their_leases,
);

async fn two_idle_days(dialect: creddy_testkit::store::Dialect) -> TestServer {
    TestServer::start_with(dialect, |s| s.agents_inactivity_days = 2).await
}

async fn agents_idle_for_the_inactivity_days_are_removed_with_their_leases(server: TestServer) {
    server.install_test_plugin("test");
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let added = api
        .add_test_backend(
            &admin,
            "test",
            "idle-master-key",
            &server.scratch().join("upstream"),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let idle = api.create_agent(&admin, "idle", &["test"]).await;
    let busy = api.create_agent(&admin, "busy", &["test"]).await;
    let never = api.create_agent(&admin, "never-used", &["test"]).await;
    let token = |a: &Value| a["token"].as_str().unwrap_or_default().to_owned();
    let lease = api
        .post("/v1/credentials/test", &token(&idle), json!({"ttl": "1d"}))
        .await;
    assert_eq!(lease.status, StatusCode::OK, "{}", lease.text);
    let sweep = || async { server.server().state().tasks().sweep_now().await };
    server.clock.advance_seconds(86_400);
    assert_eq!(
        api.get("/v1/status", &token(&busy)).await.status,
        StatusCode::OK
    );
    server.clock.advance_seconds(86_400 + 60);
    sweep().await;
    let names: Vec<String> = api
        .get("/v1/admin/agents", &admin)
        .await
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        ["busy"],
        "idle two days: removed; used a day ago: kept"
    );
    assert_eq!(
        api.get("/v1/status", &token(&idle)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let removed: Vec<(String, Value)> = server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "agent.deleted")
        .map(|e| {
            (
                e.subject
                    .map(|s| s["agent_name"].to_string())
                    .unwrap_or_default(),
                e.details["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed.iter().all(|(_, reason)| reason == "inactive"),
        "{removed:?}"
    );
    let _ = never;
    sweep().await;
    let leases = api.get("/v1/admin/tokens?state=revoked", &admin).await;
    assert_eq!(
        leases.body.as_array().map(Vec::len),
        Some(1),
        "the idle agent's lease was revoked: {}",
        leases.text
    );
}

async fn create(api: &Api, token: &str, body: Value) -> Value {
    let answer = api.post("/v1/admin/agents", token, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

async fn an_admin_creates_an_agent_that_sees_its_scopes(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let answer = api
        .post(
            "/v1/admin/agents",
            &admin,
            json!({"name": "ci-agent", "scopes": ["daytona:workspaces", "daytona", "daytona"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let created = answer.body;
    let token = created["token"].as_str().unwrap_or_default();
    assert!(token.starts_with("ckr_") && token.len() == 52, "{token}");
    let secret = created["oidc"]["client_secret"]
        .as_str()
        .unwrap_or_default();
    assert!(secret.starts_with("cks_") && secret.len() == 52);
    assert_eq!(created["oidc"]["client_id"], created["client_id"]);
    assert_eq!(created["server_url"], server.url());
    assert_eq!(
        created["scopes"],
        json!(["daytona", "daytona:workspaces"]),
        "sorted, unique"
    );
    assert_eq!(created["expires_at"], Value::Null);
    let warnings = created["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per unconfigured backend: {warnings:?}"
    );
    assert!(
        warnings[0]
            .as_str()
            .unwrap_or_default()
            .contains("backend 'daytona' is not configured yet")
    );

    let status = api.get("/v1/status", token).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_eq!(status.body["name"], "ci-agent");
    assert_eq!(status.body["id"], created["id"]);
    assert_eq!(status.body["status"], "enrolled");
    assert_eq!(status.body["scopes"], created["scopes"]);
    assert_eq!(status.body["active_credentials"], json!([]));
    assert!(status.body["last_used"].is_string(), "use is recorded");

    let listed = api.get("/v1/admin/agents", &admin).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body[0]["name"], "ci-agent");
    assert_eq!(listed.body[0]["active_leases"], 0);
    assert!(
        listed.body[0].get("token").is_none(),
        "the token is shown once only"
    );
    let shown = api.get("/v1/admin/agents/CI-AGENT", &admin).await;
    assert_eq!(shown.body["id"], created["id"], "names match in any case");
    assert_eq!(shown.body["leases"], json!([]));

    if let Some(path) = sqlite_file(&server) {
        let bytes = std::fs::read(path).unwrap_or_default();
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(
            !haystack.contains(token),
            "the vend token is stored only as a hash"
        );
        assert!(
            !haystack.contains(secret),
            "the client secret is stored only as a hash"
        );
    }
}

fn sqlite_file(server: &TestServer) -> Option<std::path::PathBuf> {
    server
        .settings
        .database_url
        .is_none()
        .then(|| server.settings.data_dir.join("creddy.db"))
}

async fn bad_names_scopes_and_lifetimes_are_refused_with_the_reason(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let long_name = "n".repeat(64);
    let huge_name = "n".repeat(10_000);
    let many: Vec<String> = (0..65).map(|i| format!("b{i}")).collect();
    let cases = [
        (
            json!({"name": "", "scopes": ["daytona"]}),
            "invalid_request",
            "empty",
        ),
        (
            json!({"name": long_name, "scopes": ["daytona"]}),
            "invalid_request",
            "longer than 63",
        ),
        (
            json!({"name": huge_name, "scopes": ["daytona"]}),
            "invalid_request",
            "longer than 63",
        ),
        (
            json!({"name": "a/b", "scopes": ["daytona"]}),
            "invalid_request",
            "'/' is not allowed",
        ),
        (
            json!({"name": "../etc", "scopes": ["daytona"]}),
            "invalid_request",
            "start with",
        ),
        (
            json!({"name": "näme", "scopes": ["daytona"]}),
            "invalid_request",
            "is not allowed",
        ),
        (
            json!({"name": "ok", "scopes": ["Daytona"]}),
            "invalid_scope",
            "not a backend name",
        ),
        (
            json!({"name": "ok", "scopes": ["daytona:"]}),
            "invalid_scope",
            "empty segment",
        ),
        (
            json!({"name": "ok", "scopes": ["admin:secrets:read"]}),
            "invalid_scope",
            "admin scopes have the form",
        ),
        (
            json!({"name": "ok", "scopes": many}),
            "invalid_request",
            "too many scopes",
        ),
        (
            json!({"name": "ok", "scopes": ["daytona"], "expires_in": "7 days"}),
            "invalid_request",
            "expires_in",
        ),
        (
            json!({"name": "ok", "scopes": ["daytona"], "expires_in": "0s"}),
            "invalid_request",
            "longer than zero",
        ),
    ];
    for (body, code, reason) in cases {
        let answer = api.post("/v1/admin/agents", &admin, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
        assert_eq!(answer.code(), code, "{body}");
        assert!(
            answer.error().contains(reason),
            "{body}: {}",
            answer.error()
        );
    }
    let agents = api.get("/v1/admin/agents", &admin).await;
    assert_eq!(
        agents.body,
        json!([]),
        "no refused request created anything"
    );
}

async fn names_are_unique_in_any_case(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    create(
        &api,
        &admin,
        json!({"name": "builder", "scopes": ["daytona"]}),
    )
    .await;
    let twin = api
        .post(
            "/v1/admin/agents",
            &admin,
            json!({"name": "Builder", "scopes": []}),
        )
        .await;
    assert_eq!(twin.status, StatusCode::CONFLICT);
    assert_eq!(twin.code(), "name_taken");
    assert!(
        twin.body["remedy"]
            .as_str()
            .unwrap_or_default()
            .contains("agent rm")
    );
}

async fn tokens_are_checked_and_admin_scopes_are_enforced(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let plain = create(
        &api,
        &admin,
        json!({"name": "plain", "scopes": ["daytona"]}),
    )
    .await;
    let reader = create(
        &api,
        &admin,
        json!({"name": "reader", "scopes": ["admin:agents:read"]}),
    )
    .await;
    let boss = create(&api, &admin, json!({"name": "boss", "scopes": ["admin:*"]})).await;
    let everything = create(&api, &admin, json!({"name": "star", "scopes": ["*"]})).await;
    let token = |v: &Value| v["token"].as_str().unwrap_or_default().to_owned();

    let forged_admin = format!("cka_{}", "0".repeat(48));
    let forged_agent = format!("ckr_{}", "0".repeat(48));
    // A proxy placeholder (§20) stands for a credential on the proxy route only.
    let placeholder = creddy_core::secret::SecretToken::generate(
        creddy_core::secret::TokenKind::ProxyPlaceholder,
    );
    for bad in [
        forged_admin.as_str(),
        forged_agent.as_str(),
        placeholder.expose(),
        "ckr_short",
        "garbage",
        "",
    ] {
        let answer = api.get("/v1/admin/agents", bad).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(answer.code(), "unauthorized");
        let status = api.get("/v1/status", bad).await;
        assert_eq!(status.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let basic = api
        .send(
            api.request(Method::GET, "/v1/status")
                .header("authorization", "Basic Zm9vOmJhcg=="),
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);

    let listed = |t: String| {
        let api = api.clone();
        async move { api.get("/v1/admin/agents", &t).await.status }
    };
    assert_eq!(
        listed(token(&plain)).await,
        StatusCode::FORBIDDEN,
        "no admin scope"
    );
    assert_eq!(
        listed(token(&everything)).await,
        StatusCode::FORBIDDEN,
        "* is never admin"
    );
    assert_eq!(listed(token(&reader)).await, StatusCode::OK);
    assert_eq!(listed(token(&boss)).await, StatusCode::OK);
    let by_reader = api
        .post(
            "/v1/admin/agents",
            &token(&reader),
            json!({"name": "x", "scopes": []}),
        )
        .await;
    assert_eq!(by_reader.status, StatusCode::FORBIDDEN);
    assert!(
        by_reader.error().contains("admin:agents:write"),
        "{}",
        by_reader.error()
    );
    let by_boss = api
        .post(
            "/v1/admin/agents",
            &token(&boss),
            json!({"name": "made-by-boss", "scopes": []}),
        )
        .await;
    assert_eq!(by_boss.status, StatusCode::OK);

    let admin_on_agent_route = api.get("/v1/status", &admin).await;
    assert_eq!(admin_on_agent_route.status, StatusCode::FORBIDDEN);
}

async fn an_expired_agent_is_refused_at_once_and_removed_by_the_reaper(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let agent = create(
        &api,
        &admin,
        json!({"name": "temp", "scopes": ["daytona"], "expires_in": "4h"}),
    )
    .await;
    let token = agent["token"].as_str().unwrap_or_default();
    server.clock.advance_seconds(4 * 3600 - 1);
    assert_eq!(api.get("/v1/status", token).await.status, StatusCode::OK);
    server.clock.advance_seconds(1);
    let refused = api.get("/v1/status", token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.code(), "agent_expired");
    assert!(
        api.get("/v1/admin/agents/temp", &admin).await.status == StatusCode::OK,
        "refused before the reaper has run"
    );
    server.server().state().tasks().sweep_now().await;
    assert_eq!(
        api.get("/v1/admin/agents/temp", &admin).await.status,
        StatusCode::NOT_FOUND
    );
    let events = server.audit_events().await;
    let last = events.last().unwrap_or_else(|| panic!("no events"));
    assert_eq!(last.action, "agent.deleted");
    assert_eq!(last.details["reason"], "expired");
    assert_eq!(last.actor["type"], "system");
}

async fn removing_an_agent_revokes_its_token_and_is_audited(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let agent = create(
        &api,
        &admin,
        json!({"name": "leaver", "scopes": ["daytona"]}),
    )
    .await;
    let token = agent["token"].as_str().unwrap_or_default();
    let removed = api.delete("/v1/admin/agents/LEAVER", &admin).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/v1/status", token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.delete("/v1/admin/agents/leaver", &admin).await.status,
        StatusCode::NOT_FOUND
    );
    let events = server.audit_events().await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "admin_token.created",
            "policy.loaded",
            "key.rotated",
            "agent.created",
            "agent.deleted",
            "auth.failed"
        ],
        "the removed token's use is a failed authentication"
    );
    assert_eq!(events[4].actor["type"], "local_admin");
    assert_eq!(
        events[4].subject.as_ref().map(|s| s["agent_name"].clone()),
        Some(json!("leaver"))
    );
    assert_eq!(events[4].ip.as_deref(), Some("127.0.0.1"));
    assert!(
        events[4]
            .request_id
            .as_deref()
            .is_some_and(|r| r.starts_with("req_"))
    );
    for event in &events {
        let text = serde_json::to_string(event).unwrap_or_default();
        assert!(!text.contains(token), "no secret in the audit trail");
        assert!(!text.contains(&admin), "no secret in the audit trail");
    }
}

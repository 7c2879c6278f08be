//! Issuing credentials: the vend path, its refusals, plugin failures during a mint, and no secret in the audit trail, error bodies or storage.

use super::*;

creddy_testkit::dialects!(TestServer::start =>
    an_agent_vends_a_credential_through_a_backend,
    ttl_scope_and_backend_refusals_name_the_problem,
    plugin_failures_during_a_mint_are_recorded_and_mapped,
    no_secret_reaches_the_audit_trail_or_an_error_body,
);

async fn an_agent_vends_a_credential_through_a_backend(server: TestServer) {
    let (site, token) = ready(server).await;
    let answer = site.vend(&token, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let issued = &answer.body;
    let value = issued["token"].as_str().unwrap_or_default();
    assert!(value.starts_with("tp_"), "{issued}");
    assert!(
        issued["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cred_")
    );
    assert_eq!(issued["ttl"], "10m", "the plugin's default");
    assert_eq!(issued["ttl_seconds"], 600);
    assert_eq!(issued["scopes"], json!(["test"]));
    assert_eq!(issued["env"]["TEST_PLUGIN_TOKEN"], value);
    assert_eq!(issued["env"]["TEST_PLUGIN_URL"], "http://upstream.test");

    let by_get = site
        .api
        .get("/v1/credentials/test?ttl=1h&scope=test%3Aread", &token)
        .await;
    assert_eq!(by_get.status, StatusCode::OK, "{}", by_get.text);
    assert_eq!(
        (by_get.body["ttl"].as_str(), by_get.body["scopes"].clone()),
        (Some("1h"), json!(["test:read"]))
    );
    let by_body = site
        .api
        .post(
            "/v1/credentials/test",
            &token,
            json!({"ttl": "2h", "scopes": ["test"]}),
        )
        .await;
    assert_eq!(by_body.body["ttl_seconds"], 7200, "{}", by_body.text);

    let active = site.api.get("/v1/active", &token).await;
    assert_eq!(active.body.as_array().map(Vec::len), Some(3));
    assert!(
        active
            .body
            .as_array()
            .into_iter()
            .flatten()
            .all(|l| l["state"] == "active")
    );
    let events = site.server.audit_events().await;
    let issued_events: Vec<_> = events
        .iter()
        .filter(|e| e.action == "credential.issued")
        .collect();
    assert_eq!(issued_events.len(), 3);
    assert_eq!(issued_events[0].lease_id.as_deref(), issued["id"].as_str());
    assert_eq!(issued_events[0].backend.as_deref(), Some("test"));
    assert!(
        issued_events[0].details["value_sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    let issued_upstream = std::fs::read_dir(site.upstream().join("issued"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(issued_upstream, 3, "each vend minted one real credential");
}

async fn ttl_scope_and_backend_refusals_name_the_problem(server: TestServer) {
    let (site, token) = ready(server).await;
    let short = site.vend(&token, "?ttl=30s").await;
    assert_eq!(
        (short.status, short.code()),
        (StatusCode::BAD_REQUEST, "invalid_ttl")
    );
    assert!(
        short.error().contains("allowed: 1m to 1d"),
        "{}",
        short.error()
    );
    let long = site.vend(&token, "?ttl=25h").await;
    assert_eq!(long.code(), "invalid_ttl");
    assert!(
        long.error().contains("exceeds the maximum 1d") && long.error().contains("plugin limit"),
        "{}",
        long.error()
    );
    assert_eq!(site.vend(&token, "?ttl=soon").await.code(), "invalid_ttl");

    let stranger = site.agent("stranger", &["other"]).await;
    let denied = site.vend(&stranger, "").await;
    assert_eq!(
        (denied.status, denied.code()),
        (StatusCode::FORBIDDEN, "scope_denied")
    );
    let reader = site.agent("reader", &["test:read"]).await;
    let broader = site.vend(&reader, "?scope=test").await;
    assert_eq!(
        broader.code(),
        "scope_denied",
        "a grant never covers a broader scope"
    );
    let unsupported = site.vend(&token, "?scope=test%3Awrite").await;
    assert_eq!(
        (unsupported.status, unsupported.code()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );
    let foreign = site.vend(&token, "?scope=other").await;
    assert_eq!(foreign.code(), "invalid_scope");
    let missing = site
        .api
        .post("/v1/credentials/nothing", &token, json!({}))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "backend_not_found")
    );
    let both = site
        .api
        .send(
            site.api
                .request(Method::POST, "/v1/credentials/test?ttl=1h")
                .bearer_auth(&token)
                .json(&json!({"ttl": "2h"})),
        )
        .await;
    assert_eq!(both.code(), "invalid_request");
    let admin = site.vend(&site.admin, "").await;
    assert_eq!(
        admin.status,
        StatusCode::FORBIDDEN,
        "the admin token is not an agent"
    );
    let leases = site.api.get("/v1/active", &token).await;
    assert_eq!(leases.body, json!([]), "no refusal left a lease behind");

    // Every refusal by a rule is audited with what was asked and why, never a secret.
    let denials: Vec<Value> = site
        .server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "credential.denied")
        .map(|e| json!({"agent": e.subject.map(|s| s["agent_name"].clone()), "backend": e.backend, "outcome": e.outcome, "details": e.details}))
        .collect();
    let codes: Vec<&str> = denials
        .iter()
        .filter_map(|d| d["details"]["code"].as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_ttl",
            "invalid_ttl",
            "invalid_ttl",
            "scope_denied",
            "scope_denied",
            "invalid_scope",
            "invalid_scope",
            "backend_not_found"
        ],
        "{denials:#?}"
    );
    assert_eq!(denials[0]["details"]["ttl"], "30s");
    assert_eq!(denials[4]["details"]["scopes"], json!(["test"]));
    assert_eq!(denials[4]["agent"], "reader");
    assert_eq!(denials[4]["outcome"], "denied");
    assert!(
        denials[4]["details"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("holds no grant covering 'test'")
    );
    assert!(
        !serde_json::to_string(&denials)
            .unwrap_or_default()
            .contains(MASTER_KEY)
    );
    let bogus = site
        .api
        .get("/v1/admin/tokens?state=active,bogus", &site.admin)
        .await;
    assert_eq!(
        (bogus.status, bogus.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{}",
        bogus.text
    );
    assert!(bogus.remedy().contains("irrevocable"), "{}", bogus.text);
}

async fn plugin_failures_during_a_mint_are_recorded_and_mapped(server: TestServer) {
    let (site, token) = ready(server).await;
    script(
        &site.upstream(),
        json!({"get_credential": "fail:upstream_unavailable"}),
    );
    let unavailable = site.vend(&token, "").await;
    assert_eq!(
        (unavailable.status, unavailable.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable")
    );
    let events = site.server.audit_events().await;
    let failed = events.iter().find(|e| e.action == "credential.failed");
    assert_eq!(
        failed.map(|e| e.details["error_kind"].clone()),
        Some(json!("upstream_unavailable"))
    );
    script(
        &site.upstream(),
        json!({"get_credential": "fail:upstream_permission"}),
    );
    assert_eq!(
        site.vend(&token, "").await.code(),
        "upstream_permission_denied"
    );
    script(&site.upstream(), json!({"get_credential": "crash"}));
    let crashed = site.vend(&token, "").await;
    assert_eq!(
        (crashed.status, crashed.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "plugin_unavailable")
    );
    let pending = site.api.get("/v1/active", &token).await;
    let states: Vec<&str> = pending
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["pending"],
        "a crashed mint leaves its lease for reconciliation; failed ones are closed"
    );
}

async fn no_secret_reaches_the_audit_trail_or_an_error_body(server: TestServer) {
    let (site, token) = ready(server).await;
    let issued = site.vend(&token, "").await;
    let value = issued.body["token"].as_str().unwrap_or_default().to_owned();
    script(
        &site.upstream(),
        json!({"get_credential": "fail:upstream_auth"}),
    );
    let error = site.vend(&token, "").await;
    let rejected = site.add_backend("second", "wrong").await;
    for secret in [
        MASTER_KEY,
        value.as_str(),
        token.as_str(),
        site.admin.as_str(),
    ] {
        for event in site.server.audit_events().await {
            let text = serde_json::to_string(&event).unwrap_or_default();
            assert!(!text.contains(secret), "a secret in {}", event.action);
        }
        assert!(!error.text.contains(secret) && !rejected.text.contains(secret));
    }
    // What someone reading the database could see: the SQLite file and its write-ahead log,
    // or every row of every PostgreSQL table.
    let at_rest = match &site.server.settings.database_url {
        None => {
            let db = site.server.settings.data_dir.join("creddy.db");
            let mut bytes = std::fs::read(&db).expect("the SQLite database file exists");
            if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Some(url) => creddy_testkit::store::postgres_rows_as_text(url).await,
    };
    assert!(
        at_rest.contains("credential.issued") && at_rest.contains("cred_"),
        "the stored state was read (the audit trail and the leases are in it)"
    );
    assert!(
        !at_rest.contains(MASTER_KEY),
        "the backend configuration is sealed at rest"
    );
    assert!(!at_rest.contains(&value), "issued values are never stored");
    assert!(
        !at_rest.contains(&token),
        "vend tokens are stored as hashes"
    );
    let _: Value = issued.body;
}

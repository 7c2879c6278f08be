//! Backends and the vend path, with the scriptable test plugin as a real child process.

use creddy_testkit::http::{Answer, Api};
use creddy_testkit::plugins::script;
use creddy_testkit::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

creddy_testkit::dialects!(TestServer::start =>
    an_agent_vends_a_credential_through_a_backend,
    ttl_scope_and_backend_refusals_name_the_problem,
    a_backend_is_saved_only_when_its_configuration_works,
    plugin_failures_during_a_mint_are_recorded_and_mapped,
    backends_come_back_after_a_restart,
    a_plugin_reload_restarts_backends_from_the_installed_binaries,
    plugins_are_listed_and_reloaded_one_at_a_time,
    expired_and_orphaned_credentials_are_revoked_upstream,
    explicit_revocation_is_idempotent_and_limited_to_the_owner,
    a_mint_with_an_unknown_outcome_is_reconciled_after_two_minutes,
    failing_revocations_back_off_then_become_irrevocable_and_are_retried_daily,
    removing_a_backend_drains_it_through_the_revocation_queue,
    no_secret_reaches_the_audit_trail_or_an_error_body,
    a_plugin_crash_during_a_revocation_is_retried_after_its_restart,
    a_revocation_refused_for_good_is_irrevocable_at_once_and_retried_daily,
    a_hanging_upstream_holds_eight_revocations_and_never_delays_another_backend,
);

const MASTER_KEY: &str = "master-key-of-the-test-upstream";

struct Site {
    server: TestServer,
    api: Api,
    admin: String,
}

impl Site {
    async fn new(server: TestServer) -> Self {
        server.install_test_plugin("test");
        let api = Api::new(&server.url());
        let admin = server.admin_token();
        Self { server, api, admin }
    }

    fn upstream(&self) -> std::path::PathBuf {
        self.server.scratch().join("upstream")
    }

    async fn add_backend(&self, name: &str, api_key: &str) -> Answer {
        self.api
            .add_test_backend(&self.admin, name, api_key, &self.upstream())
            .await
    }

    async fn agent(&self, name: &str, scopes: &[&str]) -> String {
        let answer = self
            .api
            .post(
                "/v1/admin/agents",
                &self.admin,
                json!({"name": name, "scopes": scopes}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.body["token"].as_str().unwrap_or_default().to_owned()
    }

    async fn vend(&self, token: &str, query: &str) -> Answer {
        self.api
            .call(
                Method::POST,
                &format!("/v1/credentials/test{query}"),
                Some(token),
                None,
            )
            .await
    }

    /// The restart counter of the `test` backend's plugin.
    fn plugin_restarts(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.server
            .server()
            .state()
            .backends()
            .get("test")
            .and_then(|b| b.process.clone().ok())
            .map(|p| p.restarts())
    }

    fn revoked_upstream(&self) -> usize {
        std::fs::read_dir(self.upstream().join("revoked"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

async fn ready(server: TestServer) -> (Site, String) {
    let site = Site::new(server).await;
    let added = site.add_backend("test", MASTER_KEY).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let token = site.agent("ci-agent", &["test"]).await;
    (site, token)
}

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

async fn a_backend_is_saved_only_when_its_configuration_works(server: TestServer) {
    let site = Site::new(server).await;
    let rejected = site.add_backend("test", "wrong").await;
    assert_eq!(
        (rejected.status, rejected.code()),
        (StatusCode::BAD_GATEWAY, "upstream_auth_failed")
    );
    assert_eq!(rejected.error(), "invalid API key");
    assert_eq!(rejected.body["remedy"], "use a valid key");
    let missing = site
        .api
        .post(
            "/v1/admin/backends",
            &site.admin,
            json!({"type": "test", "config": {"state_dir": "/tmp"}}),
        )
        .await;
    assert_eq!(missing.code(), "invalid_request");
    assert!(
        missing.error().contains("missing required field: api_key"),
        "{}",
        missing.error()
    );
    let unknown = site
        .api
        .post("/v1/admin/backends", &site.admin, json!({"type": "test", "config": {"api_key": "k", "state_dir": "/tmp", "colour": "red"}}))
        .await;
    assert!(
        unknown
            .error()
            .contains("unknown configuration field 'colour'"),
        "{}",
        unknown.error()
    );
    let typed = site
        .api
        .post(
            "/v1/admin/backends",
            &site.admin,
            json!({"type": "test", "config": {"api_key": 5, "state_dir": "/tmp"}}),
        )
        .await;
    assert!(
        typed.error().contains("'api_key' must be of type secret"),
        "{}",
        typed.error()
    );
    let absent = site
        .api
        .post(
            "/v1/admin/backends",
            &site.admin,
            json!({"type": "nope", "config": {}}),
        )
        .await;
    assert_eq!(
        (absent.code(), absent.body["remedy"].as_str()),
        (
            "unknown_backend",
            Some("install it with: creddy plugin install nope")
        )
    );
    let bad_name = site
        .api
        .post(
            "/v1/admin/backends",
            &site.admin,
            json!({"type": "test", "name": "Bad_Name", "config": {}}),
        )
        .await;
    assert_eq!(bad_name.code(), "invalid_request");
    assert_eq!(
        site.api.get("/v1/admin/backends", &site.admin).await.body,
        json!([]),
        "nothing was saved"
    );

    let added = site.add_backend("prod-test", MASTER_KEY).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert_eq!(added.body["warnings"], json!(["this is a test plugin"]));
    assert_eq!(
        site.add_backend("prod-test", MASTER_KEY).await.code(),
        "name_taken"
    );
    let listed = site.api.get("/v1/admin/backends", &site.admin).await;
    assert_eq!(listed.body[0]["name"], "prod-test");
    assert_eq!(listed.body[0]["type"], "test");
    assert_eq!(listed.body[0]["state"], "ready");
    let inspected = site
        .api
        .get("/v1/admin/backends/prod-test", &site.admin)
        .await;
    assert_eq!(inspected.body["config"]["api_key"], "********");
    assert_eq!(
        inspected.body["config"]["note"], "hello",
        "defaults were applied"
    );
    let described = site.api.get("/v1/admin/plugins/test", &site.admin).await;
    assert_eq!(
        described.body["config_schema"]["fields"][0]["type"],
        "secret"
    );
    assert_eq!(described.body["constraints"]["max_ttl"], 86_400);
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

async fn backends_come_back_after_a_restart(server: TestServer) {
    let (mut site, token) = ready(server).await;
    site.server.restart().await;
    site.api = Api::new(&site.server.url());
    let answer = site.vend(&token, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let key = site.server.settings.data_dir.join("master.key");
    std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
        .unwrap_or_else(|e| panic!("{e}"));
    site.server.stop().await;
    let refused = site
        .server
        .start_twin()
        .await
        .map(|_| ())
        .expect_err("wrong master key");
    assert_eq!(refused.exit_code(), 2);
    assert!(
        refused
            .to_string()
            .contains("not the key this database was set up with"),
        "{refused}"
    );
}

async fn removing_a_backend_drains_it_through_the_revocation_queue(server: TestServer) {
    let (site, token) = ready(server).await;
    let first = site.vend(&token, "").await;
    site.vend(&token, "").await;
    let sweep = || async { site.server.server().state().tasks().sweep_now().await };
    assert_eq!(
        site.api
            .delete("/v1/admin/backends/nope", &site.admin)
            .await
            .code(),
        "backend_not_found"
    );
    script(
        &site.upstream(),
        json!({"revoke_credential": "fail:upstream_unavailable"}),
    );
    let draining = site
        .api
        .delete("/v1/admin/backends/test", &site.admin)
        .await;
    assert_eq!(draining.status, StatusCode::ACCEPTED, "{}", draining.text);
    assert_eq!(
        draining.body,
        json!({"name": "test", "state": "draining", "leases": 2})
    );
    let refused = site
        .api
        .post("/v1/credentials/test", &token, json!({}))
        .await;
    assert_eq!(refused.code(), "backend_not_found", "{}", refused.text);
    assert!(
        refused.error().contains("being removed"),
        "{}",
        refused.error()
    );
    sweep().await;
    let shown = site.api.get("/v1/admin/backends/test", &site.admin).await;
    assert_eq!(shown.body["state"], "draining", "{}", shown.text);
    assert_eq!(site.revoked_upstream(), 0);

    script(&site.upstream(), json!({}));
    site.server.clock.advance_seconds(60);
    sweep().await;
    assert_eq!(
        site.revoked_upstream(),
        2,
        "both credentials were deleted upstream"
    );
    assert_eq!(
        site.api
            .get("/v1/admin/backends/test", &site.admin)
            .await
            .code(),
        "backend_not_found",
        "the backend goes once its last lease settled"
    );
    assert_eq!(site.api.get("/v1/active", &token).await.body, json!([]));
    let events = site.server.audit_events().await;
    let revoked = events
        .iter()
        .filter(|e| e.action == "credential.revoked")
        .count();
    assert_eq!(revoked, 2);
    let stages: Vec<_> = events
        .iter()
        .filter(|e| e.action == "backend.removed")
        .map(|e| e.details["stage"].clone())
        .collect();
    assert_eq!(stages, [json!("draining"), json!("removed")]);
    assert!(
        events
            .iter()
            .any(|e| e.lease_id.as_deref() == first.body["id"].as_str()
                && e.action == "credential.revoked")
    );

    site.add_backend("test", MASTER_KEY).await;
    assert_eq!(
        site.api
            .delete("/v1/admin/backends/test", &site.admin)
            .await
            .status,
        StatusCode::NO_CONTENT,
        "a backend without open leases goes at once"
    );
    site.add_backend("test", MASTER_KEY).await;
    site.vend(&token, "").await;
    let forced = site
        .api
        .delete("/v1/admin/backends/test?force=true", &site.admin)
        .await;
    assert_eq!(forced.status, StatusCode::NO_CONTENT);
    let events = site.server.audit_events().await;
    assert!(
        events.iter().any(|e| e.action == "credential.irrevocable"),
        "a forced removal leaves a visible trace"
    );
    let left = site
        .api
        .get("/v1/admin/tokens?state=irrevocable", &site.admin)
        .await;
    assert_eq!(left.body.as_array().map(Vec::len), Some(1), "{}", left.text);
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

async fn a_plugin_reload_restarts_backends_from_the_installed_binaries(server: TestServer) {
    let (site, token) = ready(server).await;
    let before = site
        .server
        .server()
        .state()
        .backends()
        .get("test")
        .and_then(|b| b.process.clone().ok());
    let reloaded = site
        .api
        .post("/v1/admin/plugins/reload", &site.admin, json!({}))
        .await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text);
    assert_eq!(reloaded.body["loaded"], json!(["test"]));
    assert!(
        before.is_some_and(|p| !p.is_running()),
        "the old process was retired"
    );
    assert_eq!(
        site.vend(&token, "").await.status,
        StatusCode::OK,
        "the new process serves"
    );
    let agent = site.agent("plain-agent", &[]).await;
    let refused = site
        .api
        .post("/v1/admin/plugins/reload", &agent, json!({}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

async fn expired_and_orphaned_credentials_are_revoked_upstream(server: TestServer) {
    let (site, token) = ready(server).await;
    let short = site.vend(&token, "?ttl=1m").await;
    let long = site.vend(&token, "?ttl=1h").await;
    assert_eq!(
        (short.status, long.status),
        (StatusCode::OK, StatusCode::OK)
    );
    site.server.clock.advance_seconds(59);
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(site.revoked_upstream(), 0, "nothing is due yet");
    site.server.clock.advance_seconds(1);
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(
        site.revoked_upstream(),
        1,
        "the expired credential was deleted upstream"
    );
    let active = site.api.get("/v1/active", &token).await;
    assert_eq!(active.body.as_array().map(Vec::len), Some(1));
    assert_eq!(active.body[0]["id"], long.body["id"]);
    let events = site.server.audit_events().await;
    let revoked = events
        .iter()
        .find(|e| e.action == "credential.revoked")
        .cloned();
    assert_eq!(
        revoked.as_ref().and_then(|e| e.lease_id.clone()).as_deref(),
        short.body["id"].as_str()
    );
    assert_eq!(
        revoked.map(|e| e.details["reason"].clone()),
        Some(json!("expired"))
    );

    script(
        &site.upstream(),
        json!({"revoke_credential": "fail:upstream_unavailable"}),
    );
    assert_eq!(
        site.api
            .delete("/v1/admin/agents/ci-agent", &site.admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(
        site.revoked_upstream(),
        1,
        "a failing upstream leaves the lease to be retried"
    );
    script(&site.upstream(), json!({}));
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(
        site.revoked_upstream(),
        1,
        "not before the backoff delay (5 to 15 s)"
    );
    site.server.clock.advance_seconds(16);
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(
        site.revoked_upstream(),
        2,
        "the removed agent's credential is revoked once the upstream answers"
    );
}

async fn explicit_revocation_is_idempotent_and_limited_to_the_owner(server: TestServer) {
    let (site, token) = ready(server).await;
    let other = site.agent("other-agent", &["test"]).await;
    let first = site.vend(&token, "").await;
    let id = first.body["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v1/active/{id}");
    assert_eq!(
        site.api.delete(&path, &other).await.status,
        StatusCode::NOT_FOUND,
        "another agent's lease is invisible"
    );
    assert_eq!(
        site.api.delete("/v1/active/cred_nope", &token).await.code(),
        "not_found"
    );
    let revoked = site.api.delete(&path, &token).await;
    assert_eq!(
        (revoked.status, revoked.body["state"].as_str()),
        (StatusCode::OK, Some("revoked"))
    );
    assert_eq!(site.revoked_upstream(), 1);
    let again = site.api.delete(&path, &token).await;
    assert_eq!(
        (again.status, again.body["state"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "repeating changes nothing"
    );
    assert_eq!(site.revoked_upstream(), 1);

    let second = site.vend(&token, "").await;
    let second_id = second.body["id"].as_str().unwrap_or_default().to_owned();
    script(
        &site.upstream(),
        json!({"revoke_credential": "fail:upstream_unavailable"}),
    );
    let queued = site
        .api
        .delete(&format!("/v1/admin/tokens/{second_id}"), &site.admin)
        .await;
    assert_eq!(
        (queued.status, queued.body["state"].as_str()),
        (StatusCode::ACCEPTED, Some("revoking"))
    );
    let listed = site
        .api
        .get(
            "/v1/admin/tokens?agent=ci-agent&state=revoking",
            &site.admin,
        )
        .await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text
    );
    assert_eq!(listed.body[0]["id"], json!(second_id));
    let revoked_list = site
        .api
        .get("/v1/admin/tokens?state=revoked", &site.admin)
        .await;
    assert_eq!(revoked_list.body[0]["id"], json!(id));
    script(&site.upstream(), json!({}));
    site.server.clock.advance_seconds(16);
    site.server.server().state().tasks().sweep_now().await;
    let shown = site
        .api
        .get(&format!("/v1/admin/tokens/{second_id}"), &site.admin)
        .await;
    assert_eq!(
        shown.body["state"], "revoked",
        "the reaper finished the queued revocation"
    );
    assert_eq!(
        site.api.get("/v1/admin/tokens", &token).await.status,
        StatusCode::FORBIDDEN
    );
}

async fn a_mint_with_an_unknown_outcome_is_reconciled_after_two_minutes(server: TestServer) {
    let (site, token) = ready(server).await;
    script(&site.upstream(), json!({"get_credential": "crash"}));
    assert_eq!(site.vend(&token, "").await.code(), "plugin_unavailable");
    let pending = site
        .api
        .get("/v1/admin/tokens?state=pending", &site.admin)
        .await;
    let id = pending.body[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(id.starts_with("cred_"), "{}", pending.text);
    script(&site.upstream(), json!({}));
    let mut restarts = site.plugin_restarts();
    if let Some(r) = restarts.as_mut() {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(30), r.wait_for(|n| *n >= 1)).await;
    }
    site.server.clock.advance_seconds(119);
    site.server.server().state().tasks().sweep_now().await;
    let still = site
        .api
        .get(&format!("/v1/admin/tokens/{id}"), &site.admin)
        .await;
    assert_eq!(
        still.body["state"], "pending",
        "within its grace a mint may still be running"
    );
    site.server.clock.advance_seconds(1);
    site.server.server().state().tasks().sweep_now().await;
    let settled = site
        .api
        .get(&format!("/v1/admin/tokens/{id}"), &site.admin)
        .await;
    assert_eq!(settled.body["state"], "failed", "{}", settled.text);
    let events = site.server.audit_events().await;
    let failed = events
        .iter()
        .rev()
        .find(|e| e.lease_id.as_deref() == Some(id.as_str()))
        .cloned();
    assert_eq!(
        failed.as_ref().map(|e| e.action.as_str()),
        Some("credential.failed")
    );
    assert_eq!(
        failed.map(|e| e.details["reason"].clone()),
        Some(json!("reconciled"))
    );
}

async fn failing_revocations_back_off_then_become_irrevocable_and_are_retried_daily(
    server: TestServer,
) {
    let (site, token) = ready(server).await;
    let issued = site.vend(&token, "?ttl=1m").await;
    let id = issued.body["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v1/admin/tokens/{id}");
    let lease = || async { site.api.get(&path, &site.admin).await.body };
    let sweep = || async { site.server.server().state().tasks().sweep_now().await };
    script(
        &site.upstream(),
        json!({"revoke_credential": "fail:upstream_unavailable"}),
    );
    site.server.clock.advance_seconds(60);
    sweep().await;
    assert_eq!(lease().await["attempts"], 1);
    sweep().await;
    assert_eq!(
        lease().await["attempts"],
        1,
        "no attempt before the backoff delay"
    );
    site.server.clock.advance_seconds(16);
    sweep().await;
    assert_eq!(lease().await["attempts"], 2);
    site.server.clock.advance_seconds(86_400);
    sweep().await;
    let given_up = lease().await;
    assert_eq!(given_up["state"], "irrevocable", "{given_up}");
    let listed = site
        .api
        .get("/v1/admin/tokens?state=irrevocable", &site.admin)
        .await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    let events = site.server.audit_events().await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "credential.revoke_failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1].details["attempt"], 2);
    assert_eq!(failed[1].details["error_kind"], "upstream_unavailable");
    assert!(
        events.iter().any(|e| e.action == "credential.irrevocable"),
        "giving up is audited"
    );
    let metrics = site.api.get("/metrics", &site.admin).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "creddy_leases_irrevocable 1\n",
        "creddy_leases{backend=\"test\",state=\"irrevocable\"} 1\n",
        "creddy_revocations_total{backend=\"test\",outcome=\"failed\"} 2\n",
        "creddy_revocations_total{backend=\"test\",outcome=\"irrevocable\"} 1\n",
        "creddy_credentials_issued_total{backend=\"test\",outcome=\"success\"} 1\n",
        "creddy_http_requests_total{route=\"/v1/credentials/{backend}\",status=\"200\"} 1\n",
        "creddy_plugin_restarts_total{backend=\"test\"} 0\n",
    ] {
        assert!(
            metrics.text.contains(line),
            "{line} missing from:\n{}",
            metrics.text
        );
    }
    assert_eq!(
        site.api.get("/metrics", &token).await.status,
        StatusCode::FORBIDDEN,
        "metrics are for admins"
    );

    // Without --force, an admin's revoke queues one more attempt now (§12.4).
    let attempts = lease().await["attempts"].as_i64().unwrap_or_default();
    let not_forced = site.api.delete(&path, &site.admin).await;
    assert_eq!(
        not_forced.status,
        StatusCode::ACCEPTED,
        "{}",
        not_forced.text
    );
    assert_eq!(not_forced.body["state"], "irrevocable");
    sweep().await;
    let retried = lease().await;
    assert_eq!(retried["state"], "irrevocable", "still failing upstream");
    assert_eq!(
        retried["attempts"].as_i64(),
        Some(attempts + 1),
        "{retried}"
    );
    script(&site.upstream(), json!({}));
    site.server.clock.advance_seconds(3_600);
    sweep().await;
    assert_eq!(
        lease().await["state"],
        "irrevocable",
        "retried daily, not hourly"
    );
    site.server.clock.advance_seconds(86_400);
    sweep().await;
    assert_eq!(
        lease().await["state"],
        "revoked",
        "the daily retry succeeded"
    );
    assert_eq!(site.revoked_upstream(), 1);

    // An admin may stop the retries of an irrevocable lease, with a reason.
    let stuck = site.vend(&token, "?ttl=1m").await;
    let stuck_id = stuck.body["id"].as_str().unwrap_or_default().to_owned();
    script(
        &site.upstream(),
        json!({"revoke_credential": "fail:upstream_unavailable"}),
    );
    site.server.clock.advance_seconds(60);
    sweep().await;
    site.server.clock.advance_seconds(86_401);
    sweep().await;
    let stuck_path = format!("/v1/admin/tokens/{stuck_id}");
    assert_eq!(
        site.api.get(&stuck_path, &site.admin).await.body["state"],
        "irrevocable"
    );
    let forgotten = site
        .api
        .delete(
            &format!("{stuck_path}?force=true&reason=deleted%20by%20hand"),
            &site.admin,
        )
        .await;
    assert_eq!(
        forgotten.body,
        json!({"id": stuck_id, "state": "forgotten"}),
        "{}",
        forgotten.text
    );
    script(&site.upstream(), json!({}));
    site.server.clock.advance_seconds(86_400 * 2);
    sweep().await;
    assert_eq!(
        site.revoked_upstream(),
        1,
        "a forgotten lease is not retried"
    );
    let events = site.server.audit_events().await;
    let forget = events
        .iter()
        .find(|e| e.action == "credential.forgotten")
        .expect("forgetting is audited");
    assert_eq!(forget.details["reason"], "deleted by hand");
    assert_eq!(forget.lease_id.as_deref(), Some(stuck_id.as_str()));
}

async fn a_plugin_crash_during_a_revocation_is_retried_after_its_restart(server: TestServer) {
    let (site, token) = ready(server).await;
    let issued = site.vend(&token, "?ttl=1m").await;
    let id = issued.body["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v1/admin/tokens/{id}");
    let mut restarts = site.plugin_restarts().expect("the backend's plugin runs");
    script(&site.upstream(), json!({"revoke_credential": "crash"}));
    site.server.clock.advance_seconds(61);
    site.server.server().state().tasks().sweep_now().await;
    let after_crash = site.api.get(&path, &site.admin).await.body;
    assert_eq!(
        after_crash["state"], "revoking",
        "an expired lease whose revocation failed is revoking (§12.1): {after_crash}"
    );
    assert_eq!(after_crash["attempts"], 1);
    assert_eq!(after_crash["last_error"], "plugin_unavailable");
    assert_eq!(site.revoked_upstream(), 0);
    script(&site.upstream(), json!({}));
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        restarts.wait_for(|n| *n >= 1),
    )
    .await
    .expect("the supervisor restarts the plugin")
    .expect("restart count");
    site.server.clock.advance_seconds(16);
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(
        site.api.get(&path, &site.admin).await.body["state"],
        "revoked"
    );
    assert_eq!(
        site.revoked_upstream(),
        1,
        "deleted once, after the restart"
    );
}

async fn a_revocation_refused_for_good_is_irrevocable_at_once_and_retried_daily(
    server: TestServer,
) {
    let (site, token) = ready(server).await;
    let issued = site.vend(&token, "?ttl=1m").await;
    let id = issued.body["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v1/admin/tokens/{id}");
    script(
        &site.upstream(),
        json!({"revoke_credential": "fail:upstream_auth"}),
    );
    site.server.clock.advance_seconds(61);
    site.server.server().state().tasks().sweep_now().await;
    let lease = site.api.get(&path, &site.admin).await.body;
    assert_eq!(lease["state"], "irrevocable", "{lease}");
    assert_eq!(lease["attempts"], 1, "no backoff series for a refusal");
    let events = site.server.audit_events().await;
    let gave_up = events
        .iter()
        .find(|e| e.action == "credential.irrevocable")
        .expect("audited");
    assert_eq!(gave_up.details["error_kind"], "upstream_auth");
    script(&site.upstream(), json!({}));
    site.server.clock.advance_seconds(86_400);
    site.server.server().state().tasks().sweep_now().await;
    assert_eq!(
        site.api.get(&path, &site.admin).await.body["state"],
        "revoked",
        "the daily retry succeeds once the master key works again"
    );
}

async fn a_hanging_upstream_holds_eight_revocations_and_never_delays_another_backend(
    server: TestServer,
) {
    let (site, _) = ready(server).await;
    let stuck_dir = site.server.scratch().join("stuck-upstream");
    let added = site
        .api
        .add_test_backend(&site.admin, "stuck", MASTER_KEY, &stuck_dir)
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let token = site.agent("busy-agent", &["test", "stuck"]).await;
    for _ in 0..12 {
        let stuck = site
            .api
            .call(
                Method::POST,
                "/v1/credentials/stuck?ttl=1m",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(stuck.status, StatusCode::OK, "{}", stuck.text);
    }
    let fine: Vec<String> = [
        site.vend(&token, "?ttl=1m").await,
        site.vend(&token, "?ttl=1m").await,
    ]
    .iter()
    .map(|a| a.body["id"].as_str().unwrap_or_default().to_owned())
    .collect();
    script(&stuck_dir, json!({"revoke_credential": "hang"}));
    site.server.clock.advance_seconds(61);
    let state = site.server.server().state().clone();
    let sweeping = tokio::spawn(async move { state.tasks().sweep_now().await });
    let started = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("revoke-calls"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let revoked = site
            .api
            .get("/v1/admin/tokens?backend=test&state=revoked", &site.admin)
            .await;
        if revoked.body.as_array().map(Vec::len) == Some(2) && started(&stuck_dir) == 8 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other backend waited: {} revoked, {} stuck calls",
            revoked.text,
            started(&stuck_dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for id in &fine {
        let shown = site
            .api
            .get(&format!("/v1/admin/tokens/{id}"), &site.admin)
            .await;
        assert_eq!(shown.body["state"], "revoked");
    }
    assert_eq!(
        started(&stuck_dir),
        8,
        "at most 8 revocations at once on the hanging backend"
    );
    let stuck_open = site
        .api
        .get("/v1/admin/tokens?backend=stuck&state=active", &site.admin)
        .await;
    assert_eq!(stuck_open.body.as_array().map(Vec::len), Some(12));
    sweeping.abort();
}

async fn plugins_are_listed_and_reloaded_one_at_a_time(server: TestServer) {
    let (site, _token) = ready(server).await;
    site.server.install_test_plugin("spare");
    let listed = site.api.get("/v1/admin/plugins", &site.admin).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["dir"], json!(site.server.settings.plugin_dir));
    let plugins = listed.body["plugins"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = plugins.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["spare", "test"]);
    assert_eq!(plugins[1]["backends"], json!(["test"]));
    assert_eq!(plugins[1]["state"], "ok");
    assert_eq!(plugins[1]["protocol_version"], 1);
    assert_eq!(plugins[0]["backends"], json!([]));

    let before = site.plugin_restarts().map(|r| *r.borrow());
    let other = site
        .api
        .post("/v1/admin/plugins/spare/reload", &site.admin, json!({}))
        .await;
    assert_eq!(other.body["loaded"], json!([]), "{}", other.text);
    let reloaded = site
        .api
        .post("/v1/admin/plugins/test/reload", &site.admin, json!({}))
        .await;
    assert_eq!(
        reloaded.body["loaded"],
        json!(["test"]),
        "{}",
        reloaded.text
    );
    assert!(before.is_some());
    let missing = site
        .api
        .post("/v1/admin/plugins/ghost/reload", &site.admin, json!({}))
        .await;
    assert_eq!(missing.code(), "unknown_backend", "{}", missing.text);

    // A tampered plugin is listed as such.
    std::fs::write(
        site.server.settings.plugin_dir.join("spare/creddy-spare"),
        b"#!/bin/sh\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let listed = site.api.get("/v1/admin/plugins", &site.admin).await;
    assert_eq!(listed.body["plugins"][0]["state"], "integrity_failed");
}

//! The attacker's suite (docs/threat-model.md): each test tries to break an invariant the way
//! a hostile caller would, against both stores. Every test here was seen failing against the
//! code before its fix.

use creddy_core::policy::{Policy, PolicySet, Rate};
use creddy_server::Settings;
use creddy_testkit::http::{Answer, Api};
use creddy_testkit::server::TestServer;
use creddy_testkit::store::Dialect;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

creddy_testkit::dialects!(attack_site =>
    a_narrow_admin_scope_cannot_create_a_broader_agent,
    an_enrollment_admin_cannot_approve_itself_into_full_admin,
    an_agent_rejection_is_decided_by_that_agent,
    concurrent_approved_amendments_keep_every_scope,
    an_amendment_through_a_narrowed_token_keeps_the_other_grants,
    a_chain_rewritten_without_the_keyed_hashes_is_broken_from_the_first_record,
    one_stripped_keyed_hash_breaks_the_chain_there,
    well_formed_request_ids_are_kept_and_others_replaced,
    a_high_s_es256_token_is_refused,
    a_damaged_trail_fails_readiness_and_verification,
    an_access_token_never_outlives_its_agent,
    a_token_narrowed_below_a_grant_keeps_its_narrow_scope,
    one_narrow_admin_scope_opens_only_its_own_routes,
);

/// Deny by default, route by route: an agent holding only `admin:audit:read` tries every
/// admin operation the API documents (read from `GET /v1/openapi.json`, so a new route is
/// tried too) and is refused with 403 wherever another scope is needed, before anything is
/// looked up or changed; only the audit routes answer it.
async fn one_narrow_admin_scope_opens_only_its_own_routes(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (auditor, _) = agent(&api, &admin, "auditor", &["admin:audit:read"]).await;
    let document = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    let paths = document.body["paths"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // Bodies that parse, so that the scope check is what answers.
    let body_of = |path: &str| match path {
        "/v1/admin/agents" => Some(json!({"name": "intruder", "scopes": ["*"]})),
        "/v1/admin/backends" => Some(json!({"type": "test", "config": {}})),
        _ => None,
    };
    let allowed = ["/v1/admin/audit", "/v1/admin/audit/verify"];
    let mut tried = 0;
    for (path, item) in &paths {
        if !(path.starts_with("/v1/admin/") || path == "/metrics") {
            continue;
        }
        let concrete = path
            .replace("{name}", "test")
            .replace("{id}", "enr_01m98qe0ncbpt1azw3scnhm17s");
        for method in item
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let answer = api
                .call(method.clone(), &concrete, Some(&auditor), body_of(path))
                .await;
            tried += 1;
            if allowed.contains(&path.as_str()) {
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "{method} {path}: {}",
                    answer.text
                );
            } else {
                assert_eq!(
                    (answer.status, answer.body["code"].as_str()),
                    (StatusCode::FORBIDDEN, Some("forbidden")),
                    "{method} {path}: {}",
                    answer.text
                );
            }
        }
    }
    assert!(tried >= 20, "only {tried} admin operations were tried");
    let agents = api.get("/v1/admin/agents", &admin).await;
    assert_eq!(
        agents.body.as_array().map(Vec::len),
        Some(1),
        "nothing was created: {}",
        agents.text
    );
}

/// A damaged SQLite file: the pages of the audit trail overwritten behind the server's back.
#[tokio::test]
async fn a_damaged_database_file_fails_readiness_and_verification() {
    use std::io::{Seek, SeekFrom, Write};
    let server = TestServer::start(Dialect::Sqlite).await;
    let (api, admin) = some_history(&server).await;
    server.execute_raw("PRAGMA wal_checkpoint(TRUNCATE)").await;
    let root: u64 = server
        .query_raw_text(
            "SELECT CAST(rootpage AS TEXT) FROM sqlite_master WHERE name = 'audit_events'",
        )
        .await
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    let page_size: u64 = server
        .query_raw_text("SELECT CAST(page_size AS TEXT) FROM pragma_page_size()")
        .await
        .and_then(|p| p.parse().ok())
        .unwrap_or(4096);
    assert!(root > 1);
    let path = server.settings.data_dir.join("creddy.db");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("the file opens");
    file.seek(SeekFrom::Start((root - 1) * page_size))
        .expect("the file seeks");
    file.write_all(&vec![0xA5; usize::try_from(page_size).unwrap_or(4096)])
        .expect("the bytes are written");
    file.sync_all().expect("the file is synced");
    let ready = api.get("/ready", "").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    let broken = verify(&api, &admin).await;
    assert_eq!(broken["ok"], false, "{broken}");
}

creddy_testkit::dialects!(crowded: crowded_site =>
    an_amendment_flood_is_capped_counted_apart_and_closed_with_its_agent,
    concurrent_vends_never_exceed_the_quota,
);

creddy_testkit::dialects!(slow: slow_client_site =>
    slow_clients_on_many_connections_cannot_starve_health,
);

/// Eight connections per address, bodies within one second.
async fn slow_client_site(dialect: Dialect) -> TestServer {
    TestServer::start_with(dialect, |s| {
        s.limits.max_connections_per_ip = 8;
        s.limits.body_read_timeout = std::time::Duration::from_secs(1);
    })
    .await
}

creddy_testkit::dialects!(signed: signed_plugin_site =>
    a_rehashed_wrapper_in_the_plugin_directory_never_runs_or_sees_the_master_key,
);

/// The master key the signed-plugin attack tries to steal.
const STOLEN: &str = "the-upstream-master-key-nobody-may-see";

/// A server that runs signed plugins only, with the test plugin installed from a signed
/// registry and configured as backend `test`.
async fn signed_plugin_site(dialect: Dialect) -> (TestServer, creddy_testkit::plugins::Installed) {
    let key = creddy_plugin::publish::SigningKey::generate();
    let server = TestServer::start_with(dialect, |s| {
        s.allow_unsigned_plugins = false;
        s.trusted_plugin_keys = vec![key.public_key()];
    })
    .await;
    let installed = creddy_testkit::registry::install_signed(
        &creddy_testkit::plugins::test_plugin_binary(),
        &server.scratch().join("registry"),
        &server.settings.plugin_dir,
        "test",
        &key,
    );
    let api = Api::new(&server.url());
    let added = api
        .add_test_backend(
            &server.admin_token(),
            "test",
            STOLEN,
            &server.scratch().join("upstream"),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    (server, installed)
}

async fn backend_state(api: &Api, admin: &str) -> Value {
    api.get("/v1/admin/backends/test", admin).await.body["state"].clone()
}

/// Replaces `from` with `to` in the file at `path`, as an attacker with write access would;
/// returns the text before.
fn rewrite(path: &std::path::Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(path).expect("the file is readable");
    std::fs::write(path, text.replace(from, to)).expect("the file is written");
    text
}

/// Asks the server to reload its plugins (as an operator after an upgrade would).
async fn reload(api: &Api, admin: &str) {
    let reloaded = api.post("/v1/admin/plugins/reload", admin, json!({})).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text);
}

/// The backend is down, `describe` refuses, and the wrapper never ran.
async fn refused_everywhere(server: &TestServer, capture: &std::path::Path, stage: &str) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    assert_eq!(backend_state(&api, &admin).await, "error", "{stage}");
    let described = api.get("/v1/admin/plugins/test", &admin).await;
    assert!(
        !described.status.is_success(),
        "{stage}: describe ran the wrapper: {}",
        described.text
    );
    let captured = std::fs::read_to_string(capture).unwrap_or_default();
    assert!(
        captured.is_empty(),
        "{stage}: the wrapper ran and saw: {captured}"
    );
}

async fn a_rehashed_wrapper_in_the_plugin_directory_never_runs_or_sees_the_master_key(
    (mut server, installed): (TestServer, creddy_testkit::plugins::Installed),
) {
    use std::os::unix::fs::PermissionsExt;
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    assert_eq!(backend_state(&api, &admin).await, "ready");

    // The attacker, with write access to the plugin directory only: keep the real plugin
    // elsewhere, put a wrapper that records everything it is sent in its place, and write the
    // wrapper's SHA-256 into install.json (leaving "signed": true).
    let capture = server.scratch().join("captured");
    let real_dir = server.scratch().join("real");
    std::fs::create_dir_all(&real_dir).expect("the directory is made");
    let real = real_dir.join("creddy-test");
    std::fs::copy(&installed.binary, &real).expect("the file is copied");
    let wrapper = format!(
        "#!/bin/sh\ntee -a '{}' | '{}' \"$@\"\n",
        capture.display(),
        real.display()
    );
    std::fs::write(&installed.binary, wrapper).expect("the file is written");
    std::fs::set_permissions(&installed.binary, std::fs::Permissions::from_mode(0o755))
        .expect("the mode is set");
    let wrapper_sha =
        creddy_plugin::host::verify::sha256_file(&installed.binary).expect("the file is hashed");
    let record = rewrite(
        &installed.binary.with_file_name("install.json"),
        &installed.sha256,
        &wrapper_sha,
    );
    assert!(record.contains("\"signed\": true"), "{record}");
    reload(&api, &admin).await;
    refused_everywhere(&server, &capture, "after a reload").await;
    server.restart().await;
    refused_everywhere(&server, &capture, "after a restart").await;
    let api = Api::new(&server.url());

    // The manifest rewritten to list the wrapper: its signature no longer holds.
    let manifest = rewrite(
        &installed.binary.with_file_name("manifest.json"),
        &installed.sha256,
        &wrapper_sha,
    );
    assert!(manifest.contains(&installed.sha256));
    reload(&api, &admin).await;
    refused_everywhere(&server, &capture, "with a rewritten manifest").await;
    let trail = serde_json::to_string(&server.audit_events().await).unwrap_or_default();
    assert!(
        trail.contains("plugin.integrity_failed"),
        "the failure is audited"
    );
    assert!(!trail.contains(STOLEN));
}

creddy_testkit::dialects!(limited: rate_limited_site =>
    tokens_vends_and_scope_requests_are_rate_limited_with_retry_after,
);

/// Room for few open requests and leases.
async fn crowded_site(dialect: Dialect) -> TestServer {
    site_with(dialect, |s| {
        s.enrollment.max_pending = 3;
        s.max_active_leases_per_agent = 10;
    })
    .await
}

/// Two requests a minute of each rate-limited kind.
async fn rate_limited_site(dialect: Dialect) -> TestServer {
    let two = Rate {
        count: 2,
        window_seconds: 60,
    };
    site_with(dialect, |s| {
        s.limits.token_per_client = two;
        s.limits.vend_per_agent = two;
        s.limits.request_per_agent = two;
    })
    .await
}

const POLICIES: &str = r#"
[[policies]]
name = "auto"
match = { name_pattern = "auto-*" }
allow = { scopes = ["test", "spare"] }
"#;

async fn attack_site(dialect: Dialect) -> TestServer {
    site_with(dialect, |_| {}).await
}

/// A server with the policies above and two backends of the test plugin, `test` and
/// `spare`, after `adjust` changed its settings.
async fn site_with(dialect: Dialect, adjust: impl FnOnce(&mut Settings)) -> TestServer {
    #[derive(serde::Deserialize)]
    struct File {
        policies: Vec<Policy>,
    }
    let file: File = toml::from_str(POLICIES).expect("the policies are valid TOML");
    let server = TestServer::start_with(dialect, |s| {
        s.policies = PolicySet::new(file.policies).expect("PolicySet is created");
        adjust(s);
    })
    .await;
    let api = Api::new(&server.url());
    server.install_test_plugin("test");
    for backend in ["test", "spare"] {
        let upstream = server.scratch().join(format!("upstream-{backend}"));
        let added = api
            .add_test_backend(
                &server.admin_token(),
                backend,
                "upstream-master-key",
                &upstream,
            )
            .await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    }
    server
}

/// An agent created by the local admin: its token and body.
async fn agent(api: &Api, admin: &str, name: &str, scopes: &[&str]) -> (String, Value) {
    let created = api.create_agent(admin, name, scopes).await;
    let token = created["token"].as_str().unwrap_or_default().to_owned();
    (token, created)
}

/// `POST /v1/admin/agents` as `token`, which may be refused.
async fn create_as(api: &Api, token: &str, name: &str, scopes: Value) -> Answer {
    api.post(
        "/v1/admin/agents",
        token,
        json!({"name": name, "scopes": scopes}),
    )
    .await
}

/// `POST /v1/admin/pending/{id}/{verb}` (`approve` or `reject`) as `token`.
async fn decide(api: &Api, token: &str, id: &str, verb: &str, body: Value) -> Answer {
    api.post(&format!("/v1/admin/pending/{id}/{verb}"), token, body)
        .await
}

async fn scopes_of(api: &Api, admin: &str, name: &str) -> Value {
    api.get(&format!("/v1/admin/agents/{name}"), admin)
        .await
        .body["scopes"]
        .clone()
}

async fn enroll(api: &Api, name: &str, scopes: &[&str]) -> Answer {
    api.call(
        Method::POST,
        "/v1/enroll",
        None,
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await
}

async fn a_narrow_admin_scope_cannot_create_a_broader_agent(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (ops, _) = agent(&api, &admin, "ops", &["admin:agents:write"]).await;
    for scopes in [
        json!(["admin:*"]),
        json!(["admin:agents:*"]),
        json!(["admin:backends:write"]),
        json!(["*"]),
        json!(["test"]),
    ] {
        let refused = create_as(&api, &ops, "escalated", json!(scopes)).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{scopes}: {}",
            refused.text
        );
        assert_eq!(refused.code(), "forbidden");
        assert!(refused.error().contains("cannot grant"), "{}", refused.text);
    }
    assert_eq!(
        api.get("/v1/admin/agents/escalated", &admin).await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
    // What it holds, it may hand on.
    let same = create_as(&api, &ops, "helper", json!(["admin:agents:write"])).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    // An agent holding a broad grant may grant narrower ones, never admin through `*`.
    let (broad, _) = agent(&api, &admin, "broad", &["admin:agents:write", "*"]).await;
    let narrower = create_as(&api, &broad, "narrow", json!(["test:read", "*"])).await;
    assert_eq!(narrower.status, StatusCode::OK, "{}", narrower.text);
    let admin_through_star = create_as(&api, &broad, "sneaky", json!(["admin:keys:read"])).await;
    assert_eq!(admin_through_star.status, StatusCode::FORBIDDEN);
}

async fn an_enrollment_admin_cannot_approve_itself_into_full_admin(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (approver, approver_body) = agent(
        &api,
        &admin,
        "approver",
        &["admin:enrollments:write", "test"],
    )
    .await;

    // The reproduction: file an amendment, approve it with an admin override.
    let filed = api
        .post("/v1/request", &approver, json!({"scopes": ["test:read"]}))
        .await;
    assert_eq!(filed.status, StatusCode::OK, "{}", filed.text);
    let own = filed.body["id"].as_str().unwrap_or_default().to_owned();
    for body in [json!({"scopes": ["admin:*"]}), json!({})] {
        let refused = decide(&api, &approver, &own, "approve", body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(
            refused.error().contains("own amendment"),
            "{}",
            refused.text
        );
    }
    let self_reject = decide(&api, &approver, &own, "reject", json!({})).await;
    assert_eq!(
        self_reject.status,
        StatusCode::FORBIDDEN,
        "{}",
        self_reject.text
    );
    assert_eq!(
        scopes_of(&api, &admin, "approver").await,
        approver_body["scopes"],
        "nothing was granted"
    );

    // Another agent's amendment, and an enrollment: no override beyond the approver's own
    // grants, with or without admin scopes.
    let (other, _) = agent(&api, &admin, "other", &["spare"]).await;
    let amendment = api
        .post("/v1/request", &other, json!({"scopes": ["test:read"]}))
        .await;
    let amendment = amendment.body["id"].as_str().unwrap_or_default().to_owned();
    let enrollment = enroll(&api, "newcomer", &["test:read"]).await;
    assert_eq!(enrollment.status, StatusCode::OK, "{}", enrollment.text);
    let enrollment = enrollment.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for id in [&amendment, &enrollment] {
        for scopes in [
            json!(["admin:*"]),
            json!(["admin:agents:write"]),
            json!(["*"]),
        ] {
            let refused = decide(&api, &approver, id, "approve", json!({"scopes": scopes})).await;
            assert_eq!(
                refused.status,
                StatusCode::FORBIDDEN,
                "{id} {scopes}: {}",
                refused.text
            );
        }
    }
    let approved = decide(&api, &approver, &amendment, "approve", json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["scopes"], json!(["spare", "test:read"]));
    let approved = decide(&api, &approver, &enrollment, "approve", json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(
        scopes_of(&api, &admin, "newcomer").await,
        json!(["test:read"])
    );
}

async fn an_agent_rejection_is_decided_by_that_agent(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (approver, body) = agent(&api, &admin, "approver", &["admin:enrollments:write"]).await;
    let filed = enroll(&api, "unwanted", &["test:read"]).await;
    let id = filed.body["id"].as_str().unwrap_or_default().to_owned();
    let rejected = decide(
        &api,
        &approver,
        &id,
        "reject",
        json!({"reason": "not ours"}),
    )
    .await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT, "{}", rejected.text);
    let decider = server
        .query_raw_text(&format!(
            "SELECT decided_by FROM enrollments WHERE id = '{id}'"
        ))
        .await;
    assert_eq!(decider.as_deref(), body["id"].as_str());
}

async fn concurrent_approved_amendments_keep_every_scope(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    for trial in 0..10 {
        let name = format!("auto-{trial}");
        let (token, _) = agent(&api, &admin, &name, &["test:read"]).await;
        let (first, second) = tokio::join!(
            api.post("/v1/request", &token, json!({"scopes": ["test"]})),
            api.post("/v1/request", &token, json!({"scopes": ["spare"]})),
        );
        for answer in [&first, &second] {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            assert_eq!(answer.body["status"], "approved", "{}", answer.text);
        }
        assert_eq!(
            scopes_of(&api, &admin, &name).await,
            json!(["spare", "test", "test:read"]),
            "trial {trial}: both approvals are kept"
        );
    }
}

async fn an_amendment_through_a_narrowed_token_keeps_the_other_grants(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (_, body) = agent(&api, &admin, "auto-narrow", &["spare", "test:read"]).await;
    let client_id = body["oidc"]["client_id"].as_str().unwrap_or_default();
    let secret = body["oidc"]["client_secret"].as_str().unwrap_or_default();
    let request = api
        .request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(client_id, Some(secret))
        .body("grant_type=client_credentials&scope=test%3Aread");
    let issued = api.send(request).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    let jwt = issued.body["access_token"].as_str().unwrap_or_default();
    let amended = api
        .post("/v1/request", jwt, json!({"scopes": ["test"]}))
        .await;
    assert_eq!(amended.status, StatusCode::OK, "{}", amended.text);
    assert_eq!(amended.body["status"], "approved");
    assert_eq!(
        scopes_of(&api, &admin, "auto-narrow").await,
        json!(["spare", "test", "test:read"])
    );
}

async fn verify(api: &Api, admin: &str) -> Value {
    let answer = api.get("/v1/admin/audit/verify", admin).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

/// A few events to tamper with.
async fn some_history(server: &TestServer) -> (Api, String) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    for name in ["alpha", "beta", "gamma"] {
        agent(&api, &admin, name, &["test"]).await;
    }
    assert_eq!(verify(&api, &admin).await["ok"], true);
    (api, admin)
}

async fn a_chain_rewritten_without_the_keyed_hashes_is_broken_from_the_first_record(
    server: TestServer,
) {
    let (api, admin) = some_history(&server).await;
    // The attacker writes to the database but lacks master.key: edit one record, recompute the
    // plain SHA-256 chain from there on, and clear every keyed hash and the head's hash.
    let mut events: Vec<Value> = api
        .get("/v1/admin/audit?limit=1000", &admin)
        .await
        .body
        .as_array()
        .cloned()
        .unwrap_or_default();
    events.sort_by_key(|e| e["seq"].as_i64());
    let victim = events
        .iter()
        .find(|e| e["action"] == "agent.created")
        .and_then(|e| e["seq"].as_i64())
        .unwrap_or_default();
    let mut sql = String::from("UPDATE audit_events SET mac = NULL;");
    let mut prev = None::<String>;
    for mut record in events {
        let seq = record["seq"].as_i64().unwrap_or_default();
        if seq < victim {
            prev = record["hash"].as_str().map(str::to_owned);
            continue;
        }
        if let Value::Object(map) = &mut record {
            map.remove("hash");
            if seq == victim {
                map.insert("details".into(), json!({"scopes": ["*"], "forged": true}));
            }
            if let Some(prev) = &prev {
                map.insert("prev_hash".into(), json!(prev));
            }
        }
        let hash = creddy_core::audit::record_hash(&record);
        sql.push_str(&format!(
            "UPDATE audit_events SET details = '{}', prev_hash = '{}', hash = '{hash}' WHERE seq = {seq};",
            record["details"],
            record["prev_hash"].as_str().unwrap_or_default()
        ));
        prev = Some(hash);
    }
    sql.push_str(&format!(
        "UPDATE audit_head SET hash = '{}' WHERE id = 1;",
        prev.unwrap_or_default()
    ));
    server.execute_raw(&sql).await;
    let forged = verify(&api, &admin).await;
    assert_eq!(forged["ok"], false, "{forged}");
    assert_eq!(forged["broken_at_seq"], 1, "{forged}");
    assert!(
        forged["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("keyed hash is missing"),
        "{forged}"
    );
}

async fn one_stripped_keyed_hash_breaks_the_chain_there(server: TestServer) {
    let (api, admin) = some_history(&server).await;
    for seq in [1, 4] {
        let mac = server
            .query_raw_text(&format!("SELECT mac FROM audit_events WHERE seq = {seq}"))
            .await
            .unwrap_or_default();
        server
            .execute_raw(&format!(
                "UPDATE audit_events SET mac = NULL WHERE seq = {seq}"
            ))
            .await;
        let broken = verify(&api, &admin).await;
        assert_eq!(
            (broken["ok"].clone(), broken["broken_at_seq"].clone()),
            (json!(false), json!(seq)),
            "{broken}"
        );
        server
            .execute_raw(&format!(
                "UPDATE audit_events SET mac = '{mac}' WHERE seq = {seq}"
            ))
            .await;
        assert_eq!(verify(&api, &admin).await["ok"], true, "restored");
    }
}

async fn well_formed_request_ids_are_kept_and_others_replaced(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let create = |id: String, name: &'static str| {
        let request = api
            .request(Method::POST, "/v1/admin/agents")
            .bearer_auth(&admin)
            .header("x-request-id", id)
            .json(&json!({"name": name, "scopes": ["test"]}));
        api.send(request)
    };
    let kept = create("build-42_A".into(), "kept").await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    assert_eq!(kept.header("x-request-id"), Some("build-42_A"));
    for (id, name) in [
        ("x".repeat(60 * 1024), "huge"),
        ("a".repeat(65), "long"),
        ("<script>".into(), "markup"),
        ("a b".into(), "spaced"),
    ] {
        let replaced = create(id.clone(), name).await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
        let given = replaced.header("x-request-id").unwrap_or_default();
        assert!(given.starts_with("req_") && given != id, "{name}: {given}");
    }
    let events = server.audit_events().await;
    let ids: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "agent.created")
        .filter_map(|e| e.request_id.as_deref())
        .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(ids[0], "build-42_A");
    assert!(
        ids[1..]
            .iter()
            .all(|id| id.starts_with("req_") && id.len() <= 64),
        "{ids:?}"
    );
}

async fn an_amendment_flood_is_capped_counted_apart_and_closed_with_its_agent(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (flooder, _) = agent(&api, &admin, "flooder", &["test:read"]).await;
    let mut refused = None;
    for i in 0..8 {
        let answer = api
            .post("/v1/request", &flooder, json!({"scopes": ["test"]}))
            .await;
        if answer.status != StatusCode::OK {
            refused = Some((i, answer));
            break;
        }
        assert_eq!(answer.body["status"], "pending", "{}", answer.text);
    }
    let (at, answer) = refused.unwrap_or_else(|| panic!("eight open amendments accepted"));
    assert_eq!(at, 5, "five open amendments per agent");
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text
    );
    assert!(answer.header("retry-after").is_some());
    assert!(
        answer.error().contains("5 scope requests waiting"),
        "{}",
        answer.text
    );

    // Enrollments have their own count (here 3), untouched by the flood.
    for name in ["first", "second", "third"] {
        let enrolled = enroll(&api, name, &["test:read"]).await;
        assert_eq!(enrolled.status, StatusCode::OK, "{name}: {}", enrolled.text);
        assert_eq!(enrolled.body["status"], "pending");
    }
    let full = enroll(&api, "fourth", &["test:read"]).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS, "{}", full.text);

    // Removing the agent closes its requests in the same step.
    let removed = api.delete("/v1/admin/agents/flooder", &admin).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let pending = api.get("/v1/admin/pending", &admin).await;
    let kinds: Vec<&str> = pending
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert_eq!(kinds, ["enroll", "enroll", "enroll"], "{}", pending.text);
    let deleted = server
        .audit_events()
        .await
        .into_iter()
        .rfind(|e| e.action == "agent.deleted")
        .map(|e| e.details);
    assert_eq!(
        deleted.map(|d| d["closed_amendments"].clone()),
        Some(json!(5))
    );
}

async fn concurrent_vends_never_exceed_the_quota(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (token, _) = agent(&api, &admin, "greedy", &["test"]).await;
    let mut vends = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (api, token) = (api.clone(), token.clone());
        vends.spawn(async move {
            api.post("/v1/credentials/test", &token, json!({"ttl": "10m"}))
                .await
        });
    }
    let answers = vends.join_all().await;
    let issued = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != StatusCode::OK)
        .collect();
    assert_eq!(issued, 10, "exactly the quota is issued");
    assert!(
        refused
            .iter()
            .all(|a| a.status == StatusCode::TOO_MANY_REQUESTS && a.code() == "quota_exceeded"),
        "{:?}",
        refused.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    let active = api.get("/v1/active", &token).await;
    assert_eq!(active.body.as_array().map(Vec::len), Some(10));
}

async fn tokens_vends_and_scope_requests_are_rate_limited_with_retry_after(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (token, body) = agent(&api, &admin, "busy", &["test"]).await;
    let client_id = body["oidc"]["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secret = body["oidc"]["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let token_request = || {
        api.send(
            api.request(Method::POST, "/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .basic_auth(&client_id, Some(&secret))
                .body("grant_type=client_credentials"),
        )
    };
    let vend = || api.post("/v1/credentials/test", &token, json!({"ttl": "10m"}));
    let amend = || api.post("/v1/request", &token, json!({"scopes": ["spare"]}));
    for round in 0..2 {
        for _ in 0..2 {
            assert_eq!(
                token_request().await.status,
                StatusCode::OK,
                "round {round}"
            );
            assert_eq!(vend().await.status, StatusCode::OK, "round {round}");
            assert_eq!(amend().await.status, StatusCode::OK, "round {round}");
        }
        for (kind, answer) in [
            ("token", token_request().await),
            ("vend", vend().await),
            ("request", amend().await),
        ] {
            assert_eq!(
                answer.status,
                StatusCode::TOO_MANY_REQUESTS,
                "{kind}: {}",
                answer.text
            );
            let retry: u64 = answer
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or_default();
            assert!((1..=60).contains(&retry), "{kind}: Retry-After {retry}");
            let code = answer.body["code"]
                .as_str()
                .or(answer.body["error"].as_str());
            assert_eq!(code, Some("rate_limited"), "{kind}: {}", answer.text);
        }
        // A new window admits them again.
        server.clock.advance_seconds(60);
    }
}

/// A connection from `source` that sends a request's headers and one byte of its body.
async fn trickling_connection(
    server: &std::net::SocketAddr,
    source: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket is made");
    let local: std::net::SocketAddr = format!("{source}:0").parse().expect("the text parses");
    socket.bind(local).expect("a loopback port is free");
    let mut stream = socket
        .connect(*server)
        .await
        .expect("the connection is made");
    let _ = stream
        .write_all(
            b"POST /v1/enroll HTTP/1.1\r\nhost: creddy\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        )
        .await;
    stream
}

/// What the server sent before closing, or `None` when it kept the connection open for
/// `within` without a word.
async fn answer_of(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut buffer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buffer).into_owned()),
        Err(_) => None,
    }
}

async fn slow_clients_on_many_connections_cannot_starve_health(server: TestServer) {
    let address = server.server().addr();
    let mut crowd = Vec::new();
    for _ in 0..40 {
        crowd.push(trickling_connection(&address, "127.0.0.2").await);
    }
    // Everyone else is still served, at once.
    let api = Api::new(&server.url());
    for _ in 0..5 {
        let health =
            tokio::time::timeout(std::time::Duration::from_secs(5), api.get("/health", ""))
                .await
                .unwrap_or_else(|_| {
                    panic!("/health did not answer while slow clients held connections")
                });
        assert_eq!(health.status, StatusCode::OK);
    }
    // Beyond eight, the crowd's connections were closed unanswered; the eight admitted ones
    // get 408 once their body is late.
    let mut closed = 0;
    let mut timed_out = 0;
    for stream in &mut crowd {
        match answer_of(stream, std::time::Duration::from_secs(10)).await {
            Some(text) if text.is_empty() => closed += 1,
            Some(text) if text.starts_with("HTTP/1.1 408") => {
                assert!(text.contains("did not arrive within 1 s"), "{text}");
                timed_out += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((closed, timed_out), (32, 8));
}

/// An access token for the agent created with `body`, asking for `scope` (if any).
async fn access_token(api: &Api, body: &Value, scope: Option<&str>) -> Answer {
    let client_id = body["oidc"]["client_id"].as_str().unwrap_or_default();
    let secret = body["oidc"]["client_secret"].as_str().unwrap_or_default();
    let form = match scope {
        Some(scope) => format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(':', "%3A")
        ),
        None => "grant_type=client_credentials".to_owned(),
    };
    let request = api
        .request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(client_id, Some(secret))
        .body(form);
    let issued = api.send(request).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    issued
}

/// `n - s` for a big-endian 32-byte `s`, with `n` the order of P-256.
fn p256_negate(s: &[u8]) -> Vec<u8> {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = u8::try_from(d).unwrap_or_default();
    }
    out
}

async fn a_high_s_es256_token_is_refused(server: TestServer) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let rotated = api
        .post("/v1/admin/keys/rotate", &admin, json!({"alg": "ES256"}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let (_, body) = agent(&api, &admin, "signer", &["test"]).await;
    for _ in 0..4 {
        let issued = access_token(&api, &body, None).await;
        let token = issued.body["access_token"].as_str().unwrap_or_default();
        let (signed, signature) = token.rsplit_once('.').unwrap_or_default();
        let raw = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
        assert_eq!(raw.len(), 64);
        let mut twin = raw[..32].to_vec();
        twin.extend(p256_negate(&raw[32..]));
        let twin = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&twin));
        assert_eq!(api.get("/v1/status", token).await.status, StatusCode::OK);
        let refused = api.get("/v1/status", &twin).await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "the malleated twin: {}",
            refused.text
        );
    }
}

async fn an_access_token_never_outlives_its_agent(server: TestServer) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let created = api
        .post(
            "/v1/admin/agents",
            &admin,
            json!({"name": "short-lived", "scopes": ["test"], "expires_in": "10m"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let issued = access_token(&api, &created.body, None).await;
    let expires_in = issued.body["expires_in"].as_i64().unwrap_or_default();
    assert!((1..=600).contains(&expires_in), "expires_in {expires_in}");
    let token = issued.body["access_token"].as_str().unwrap_or_default();
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let agent_end = api.get("/v1/admin/agents/short-lived", &admin).await.body["expires_at"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    let exp = claims["exp"].as_i64().unwrap_or_default();
    let end =
        time::OffsetDateTime::parse(&agent_end, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .unwrap_or_default();
    assert!(exp <= end, "exp {exp} after the agent's end {end}");
}

async fn a_token_narrowed_below_a_grant_keeps_its_narrow_scope(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let (_, body) = agent(&api, &admin, "narrowed", &["test"]).await;
    let issued = access_token(&api, &body, Some("test:read")).await;
    let jwt = issued.body["access_token"].as_str().unwrap_or_default();
    let vend = api
        .post(
            "/v1/credentials/test",
            jwt,
            json!({"ttl": "5m", "scopes": ["test:read"]}),
        )
        .await;
    assert_eq!(
        vend.status,
        StatusCode::OK,
        "the narrow scope is usable: {}",
        vend.text
    );
    assert_eq!(vend.body["scopes"], json!(["test:read"]));
    let broader = api
        .post(
            "/v1/credentials/test",
            jwt,
            json!({"ttl": "5m", "scopes": ["test"]}),
        )
        .await;
    assert_eq!(broader.status, StatusCode::FORBIDDEN, "{}", broader.text);
    let status = api.get("/v1/status", jwt).await;
    assert_eq!(
        status.body["scopes"],
        json!(["test:read"]),
        "{}",
        status.text
    );
}

async fn a_damaged_trail_fails_readiness_and_verification(server: TestServer) {
    let (api, admin) = some_history(&server).await;
    assert_eq!(api.get("/ready", "").await.status, StatusCode::OK);
    server
        .execute_raw("UPDATE audit_events SET details = '{not json' WHERE seq = 2")
        .await;
    let broken = verify(&api, &admin).await;
    assert_eq!(broken["ok"], false, "{broken}");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be read"),
        "{broken}"
    );
    server
        .execute_raw(
            "UPDATE audit_events SET details = '{not json' \
             WHERE seq = (SELECT seq FROM audit_head WHERE id = 1)",
        )
        .await;
    let ready = api.get("/ready", "").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
}

/// A client claiming another address in `X-Forwarded-For` is believed only through a trusted
/// proxy: otherwise audit records and rate limits see its own address.
#[tokio::test]
async fn a_forged_forwarded_address_is_believed_only_from_a_trusted_proxy() {
    for (trusted, expected) in [(None, "127.0.0.1"), (Some("127.0.0.0/8"), "203.0.113.9")] {
        let server = TestServer::start_with(Dialect::Sqlite, |s| {
            s.trusted_proxies = trusted
                .map(|t| creddy_server::proxies::Network::parse(t).expect("the text parses"))
                .into_iter()
                .collect();
        })
        .await;
        let api = Api::new(&server.url());
        let request = api
            .request(Method::POST, "/v1/admin/agents")
            .bearer_auth(server.admin_token())
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
            .json(&json!({"name": "forwarded", "scopes": ["test"]}));
        assert_eq!(api.send(request).await.status, StatusCode::OK);
        let created = server
            .audit_events()
            .await
            .into_iter()
            .find(|e| e.action == "agent.created")
            .and_then(|e| e.ip);
        assert_eq!(
            created.as_deref(),
            Some(expected),
            "trusted proxies: {trusted:?}"
        );
    }
}

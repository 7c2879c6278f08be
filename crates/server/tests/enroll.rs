//! Enrollment, approval, amendments and policies (§7, §8), against both stores, with the
//! test plugin as a real backend.

use creddy_core::Clock;
use creddy_core::policy::{Policy, PolicySet, Rate};
use creddy_testkit::http::{Answer, Api};
use creddy_testkit::server::TestServer;
use creddy_testkit::store::Dialect;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

creddy_testkit::dialects!(with_policies =>
    an_enrollment_waits_for_an_admin_and_its_credentials_are_picked_up_once,
    refusals_name_the_problem_and_never_list_backends,
    undecided_and_unclaimed_enrollments_expire,
    policies_approve_deny_or_leave_to_a_person_and_their_limits_hold,
    a_policy_narrows_ttls_and_ends_agent_lifetimes,
    amendments_merge_scopes_once_approved,
    the_local_admin_token_approves_at_once_and_agents_can_leave,
    a_flood_of_enrollments_from_one_address_is_rate_limited,
);

const MASTER_KEY: &str = "master-key-of-the-test-upstream";
/// Enrollment requests allowed per address and minute in these tests.
const FLOOD_LIMIT: u64 = 15;

const POLICIES: &str = r#"
[[policies]]
name = "ci"
match = { name_pattern = "ci-*" }
allow = { scopes = ["test:read"], max_ttl = "30m", max_agent_lifetime = "2h" }
limits = { max_agents = 2, rate = "3/hour" }

[[policies]]
name = "locked"
match = { name_pattern = "locked-*" }
deny = { scopes = ["test"] }
allow = { scopes = ["test"] }

[[policies]]
name = "manual"
match = { name_pattern = "dev-?" }
"#;

fn policies(text: &str) -> PolicySet {
    #[derive(serde::Deserialize)]
    struct File {
        policies: Vec<Policy>,
    }
    let file: File = toml::from_str(text).expect("the policies are valid TOML");
    PolicySet::new(file.policies).expect("PolicySet is created")
}

async fn with_policies(dialect: Dialect) -> TestServer {
    TestServer::start_with(dialect, |s| {
        s.policies = policies(POLICIES);
        s.enrollment.per_ip = Rate {
            count: FLOOD_LIMIT,
            window_seconds: 60,
        };
    })
    .await
}

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
        let site = Self { server, api, admin };
        let upstream = site.server.scratch().join("upstream");
        let added = site
            .api
            .add_test_backend(&site.admin, "test", MASTER_KEY, &upstream)
            .await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
        site
    }

    async fn enroll(&self, name: &str, scopes: &[&str]) -> Answer {
        self.api
            .call(
                Method::POST,
                "/v1/enroll",
                None,
                Some(json!({"name": name, "scopes": scopes})),
            )
            .await
    }

    async fn poll(&self, secret: &str) -> Answer {
        let request = self
            .api
            .request(Method::GET, "/v1/enroll/status")
            .header("x-creddy-enrollment-secret", secret);
        self.api.send(request).await
    }

    async fn approve(&self, id: &str, body: Value) -> Answer {
        self.api
            .post(
                &format!("/v1/admin/pending/{id}/approve"),
                &self.admin,
                body,
            )
            .await
    }

    async fn create_agent(&self, name: &str, scopes: &[&str]) -> Answer {
        self.api
            .post(
                "/v1/admin/agents",
                &self.admin,
                json!({"name": name, "scopes": scopes}),
            )
            .await
    }

    async fn sweep(&self) {
        self.server.server().state().tasks().sweep_now().await;
    }

    async fn actions(&self) -> Vec<String> {
        self.server
            .audit_events()
            .await
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

async fn an_enrollment_waits_for_an_admin_and_its_credentials_are_picked_up_once(
    server: TestServer,
) {
    let site = Site::new(server).await;
    let asked = site.enroll("builder", &["test"]).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert_eq!(asked.body["status"], "pending");
    let (id, secret) = (text(&asked.body["id"]), text(&asked.body["secret"]));
    assert!(
        id.starts_with("enr_") && secret.starts_with("cke_"),
        "{}",
        asked.text
    );
    assert_eq!(
        asked.header("cache-control"),
        Some("no-store"),
        "the poll secret is not cached"
    );
    assert_eq!(site.poll(&secret).await.body["status"], "pending");

    let listed = site.api.get("/v1/admin/pending", &site.admin).await;
    let rows = listed.body.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{}", listed.text);
    assert_eq!(rows[0]["type"], "enroll");
    assert_eq!(rows[0]["name"], "builder");
    assert_eq!(rows[0]["scopes"], json!(["test"]));
    assert_eq!(rows[0]["ip"], "127.0.0.1");
    assert!(!listed.text.contains("cke_"), "no secret in the listing");

    let approved = site.approve(&id, json!({"scopes": ["test:read"]})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["approved"], true);
    assert_eq!(
        approved.body["scopes"],
        json!(["test:read"]),
        "the admin narrowed them"
    );
    assert_eq!(
        site.approve(&id, json!({})).await.code(),
        "conflict",
        "a decided request stays decided"
    );

    let picked = site.poll(&secret).await;
    assert_eq!(picked.status, StatusCode::OK, "{}", picked.text);
    assert_eq!(picked.body["status"], "approved");
    let token = text(&picked.body["token"]);
    assert!(token.starts_with("ckr_"));
    assert!(text(&picked.body["oidc"]["client_secret"]).starts_with("cks_"));
    assert_eq!(picked.body["agent_id"], approved.body["agent_id"]);
    let again = site.poll(&secret).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::GONE, "enrollment_claimed"),
        "credentials are handed out once"
    );
    let me = site.api.get("/v1/status", &token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["name"], "builder");
    assert_eq!(me.body["scopes"], json!(["test:read"]));
    let vend = site
        .api
        .call(
            Method::POST,
            "/v1/credentials/test?scope=test:read",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(vend.status, StatusCode::OK, "{}", vend.text);

    let rejected = site.enroll("dev-x", &["test"]).await;
    let rejected_id = text(&rejected.body["id"]);
    let refused = site
        .api
        .post(
            &format!("/v1/admin/pending/{rejected_id}/reject"),
            &site.admin,
            json!({"reason": "not on this server"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NO_CONTENT, "{}", refused.text);
    let after = site.poll(&text(&rejected.body["secret"])).await;
    assert_eq!(after.body["status"], "rejected");
    assert_eq!(after.body["reason"], "not on this server");
    assert_eq!(
        site.enroll("dev-x", &["test"]).await.body["status"],
        "pending",
        "a rejected name is free again"
    );
    let actions = site.actions().await;
    for action in [
        "enrollment.requested",
        "policy.decision",
        "enrollment.approved",
        "agent.created",
        "enrollment.claimed",
        "enrollment.rejected",
        "policy.loaded",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

async fn refusals_name_the_problem_and_never_list_backends(server: TestServer) {
    let site = Site::new(server).await;
    let created = site.create_agent("taken", &["test"]).await;
    assert_eq!(created.status, StatusCode::OK);
    let taken = site.enroll("TAKEN", &["test"]).await;
    assert_eq!(
        (taken.status, taken.code()),
        (StatusCode::CONFLICT, "name_taken")
    );
    assert!(
        text(&taken.body["remedy"]).contains("another name"),
        "{}",
        taken.text
    );
    assert_eq!(site.enroll("twice", &["test"]).await.status, StatusCode::OK);
    assert_eq!(site.enroll("twice", &["test"]).await.code(), "name_taken");

    let unknown = site.enroll("nosy", &["github:repo"]).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::BAD_REQUEST, "unknown_backend")
    );
    assert!(unknown.text.contains("github:repo"), "{}", unknown.text);
    assert!(
        !unknown.text.contains("\"test\"") && !unknown.text.contains("backend 'test'"),
        "the configured backends stay private: {}",
        unknown.text
    );
    assert_eq!(
        site.enroll("nosy", &["test:write"]).await.code(),
        "invalid_scope",
        "the plugin decides what its scopes are"
    );
    assert_eq!(
        site.enroll("nosy", &["admin:agents:read"]).await.code(),
        "invalid_scope"
    );
    assert_eq!(site.enroll("nosy", &[]).await.code(), "invalid_request");
    assert_eq!(
        site.enroll("bad/name", &["test"]).await.code(),
        "invalid_request"
    );
    assert_eq!(
        site.poll("cke_0000000000000000000000000000000000000000000000000")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn undecided_and_unclaimed_enrollments_expire(server: TestServer) {
    let site = Site::new(server).await;
    let waiting = site.enroll("waiter", &["test"]).await;
    let lazy = site.enroll("lazy", &["test"]).await;
    site.approve(&text(&lazy.body["id"]), json!({})).await;
    site.server.clock.advance_seconds(3_601);
    site.sweep().await;
    assert_eq!(
        site.poll(&text(&lazy.body["secret"])).await.body["status"],
        "expired",
        "an approval not picked up within the hour"
    );
    assert_eq!(
        site.api
            .get("/v1/admin/agents/lazy", &site.admin)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "its agent is removed"
    );
    assert_eq!(
        site.poll(&text(&waiting.body["secret"])).await.body["status"],
        "pending"
    );
    site.server.clock.advance_seconds(86_400);
    site.sweep().await;
    assert_eq!(
        site.poll(&text(&waiting.body["secret"])).await.body["status"],
        "expired"
    );
    let events = site.server.audit_events().await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "agent.deleted" && e.details["reason"] == "unclaimed")
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "enrollment.expired")
            .count(),
        2
    );
    assert!(
        site.api.get("/v1/admin/pending", &site.admin).await.body == json!([]),
        "nothing left waiting"
    );
}

async fn policies_approve_deny_or_leave_to_a_person_and_their_limits_hold(server: TestServer) {
    let site = Site::new(server).await;
    let auto = site.enroll("ci-1", &["test:read"]).await;
    assert_eq!(auto.body["status"], "approved", "{}", auto.text);
    assert_eq!(auto.body["policy"], "ci");
    assert!(text(&auto.body["token"]).starts_with("ckr_"));
    let uncovered = site.enroll("ci-2", &["test"]).await;
    assert_eq!(uncovered.body["status"], "pending", "{}", uncovered.text);
    let denied = site.enroll("locked-1", &["test:read"]).await;
    assert_eq!(denied.body["status"], "rejected", "{}", denied.text);
    assert_eq!(
        denied.body["reason"],
        "denied by policy 'locked': test:read"
    );
    let manual = site.enroll("dev-1", &["test"]).await;
    assert_eq!(manual.body["status"], "pending");
    let unmatched = site.enroll("other", &["test"]).await;
    assert_eq!(unmatched.body["status"], "pending");

    assert_eq!(
        site.enroll("ci-3", &["test:read"]).await.body["status"],
        "approved"
    );
    let full = site.enroll("ci-4", &["test:read"]).await;
    assert_eq!(
        full.body["status"], "pending",
        "max_agents = 2: {}",
        full.text
    );
    let limit = site.approve(&text(&full.body["id"]), json!({})).await;
    assert_eq!(
        (limit.status, limit.code()),
        (StatusCode::CONFLICT, "policy_limit"),
        "an admin cannot exceed max_agents either"
    );
    let created = site.create_agent("ci-9", &["test"]).await;
    assert_eq!(created.code(), "policy_limit");
    let pending = site.api.get("/v1/admin/pending", &site.admin).await.body;
    let reasons: Vec<String> = pending
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(&p["reason"]))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("limits.max_agents (2)")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("requires manual approval"))
    );
    let decisions: Vec<Value> = site
        .server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "policy.decision")
        .map(|e| e.details)
        .collect();
    assert!(
        decisions
            .iter()
            .any(|d| d["policy"] == "locked" && d["outcome"] == "rejected")
    );

    // The rate counts automatic approvals in the window, from stored state.
    let ci1 = site.api.get("/v1/admin/agents/ci-1", &site.admin).await;
    assert_eq!(ci1.body["policy"], "ci");
    site.api.delete("/v1/admin/agents/ci-1", &site.admin).await;
    site.api.delete("/v1/admin/agents/ci-3", &site.admin).await;
    assert_eq!(
        site.enroll("ci-5", &["test:read"]).await.body["status"],
        "approved"
    );
    let throttled = site.enroll("ci-6", &["test:read"]).await;
    assert_eq!(
        throttled.body["status"], "pending",
        "rate 3/hour: {}",
        throttled.text
    );
    site.server.clock.advance_seconds(3_601);
    site.sweep().await;
    assert_eq!(
        site.enroll("ci-7", &["test:read"]).await.body["status"],
        "approved"
    );
}

async fn a_policy_narrows_ttls_and_ends_agent_lifetimes(server: TestServer) {
    let site = Site::new(server).await;
    let auto = site.enroll("ci-ttl", &["test:read"]).await;
    let token = text(&auto.body["token"]);
    let expires =
        creddy_core::Timestamp::parse_rfc3339(&text(&auto.body["expires_at"])).expect("an expiry");
    assert_eq!(
        expires.seconds_since(site.server.clock.now()),
        7_200,
        "max_agent_lifetime"
    );
    let too_long = site
        .api
        .call(
            Method::POST,
            "/v1/credentials/test?ttl=1h&scope=test:read",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(too_long.code(), "invalid_ttl", "{}", too_long.text);
    assert!(
        too_long.text.contains("ci"),
        "the message names the policy: {}",
        too_long.text
    );
    let fine = site
        .api
        .call(
            Method::POST,
            "/v1/credentials/test?ttl=30m&scope=test:read",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.text);
    site.server.clock.advance_seconds(7_201);
    assert_eq!(
        site.api.get("/v1/status", &token).await.code(),
        "agent_expired"
    );
    site.sweep().await;
    assert_eq!(
        site.api
            .get("/v1/admin/agents/ci-ttl", &site.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn amendments_merge_scopes_once_approved(server: TestServer) {
    let site = Site::new(server).await;
    let created = site.create_agent("dev-a", &["test:read"]).await;
    let token = text(&created.body["token"]);
    let asked = site
        .api
        .post("/v1/request", &token, json!({"scopes": ["test"]}))
        .await;
    assert_eq!(asked.body["status"], "pending", "{}", asked.text);
    let id = text(&asked.body["id"]);
    let status = site.api.get("/v1/status", &token).await;
    assert_eq!(status.body["pending_amendments"][0]["id"], json!(id));
    let listed = site.api.get("/v1/admin/pending", &site.admin).await;
    assert_eq!(listed.body[0]["type"], "amendment");
    let approved = site.approve(&id, json!({})).await;
    assert_eq!(
        approved.body["scopes"],
        json!(["test", "test:read"]),
        "{}",
        approved.text
    );
    assert_eq!(
        site.api.get("/v1/status", &token).await.body["scopes"],
        json!(["test", "test:read"])
    );
    assert_eq!(
        site.api
            .post(
                "/v1/request",
                &token,
                json!({"scopes": ["admin:agents:write"]})
            )
            .await
            .code(),
        "invalid_scope"
    );

    let auto = site.enroll("ci-amend", &["test:read"]).await;
    let ci_token = text(&auto.body["token"]);
    let denied_more = site
        .api
        .post("/v1/request", &ci_token, json!({"scopes": ["test"]}))
        .await;
    assert_eq!(
        denied_more.body["status"], "pending",
        "not covered by the policy"
    );
    let actions = site.actions().await;
    assert!(actions.iter().any(|a| a == "amendment.requested"));
    assert!(actions.iter().any(|a| a == "amendment.approved"));
}

async fn the_local_admin_token_approves_at_once_and_agents_can_leave(server: TestServer) {
    let site = Site::new(server).await;
    let direct = site
        .api
        .call(
            Method::POST,
            "/v1/enroll",
            None,
            Some(json!({"name": "laptop", "scopes": ["test"], "admin_token": site.admin})),
        )
        .await;
    assert_eq!(direct.body["status"], "approved", "{}", direct.text);
    let token = text(&direct.body["token"]);
    let wrong = site
        .api
        .call(
            Method::POST,
            "/v1/enroll",
            None,
            Some(json!({"name": "laptop-2", "scopes": ["test"], "admin_token": "cka_wrong"})),
        )
        .await;
    assert_eq!(wrong.body["status"], "pending", "a wrong token is no token");
    let vend = site
        .api
        .call(Method::POST, "/v1/credentials/test", Some(&token), None)
        .await;
    assert_eq!(vend.status, StatusCode::OK, "{}", vend.text);
    let left = site.api.delete("/v1/self", &token).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    assert_eq!(
        site.api.get("/v1/status", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    site.sweep().await;
    let lease = site
        .api
        .get(
            &format!("/v1/admin/tokens/{}", text(&vend.body["id"])),
            &site.admin,
        )
        .await;
    assert_eq!(
        lease.body["state"], "revoked",
        "leaving revokes the agent's credentials"
    );
    assert!(
        site.server
            .audit_events()
            .await
            .iter()
            .any(|e| e.action == "agent.deleted" && e.details["reason"] == "self")
    );
}

async fn a_flood_of_enrollments_from_one_address_is_rate_limited(server: TestServer) {
    let site = Site::new(server).await;
    for i in 0..FLOOD_LIMIT {
        let asked = site.enroll(&format!("flood-{i}"), &["test"]).await;
        assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    }
    let refused = site.enroll("flood-over", &["test"]).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    site.server.clock.advance_seconds(61);
    assert_eq!(
        site.enroll("flood-late", &["test"]).await.status,
        StatusCode::OK
    );
}

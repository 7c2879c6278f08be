//! The audit trail: listing with filters and paging, and verification that catches an
//! edited, deleted or reordered record, a rewrite without the master key, and removed newest
//! records (issue #7, part 4 and 5), against both stores.

use creddy_testkit::http::Api;
use creddy_testkit::server::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

creddy_testkit::dialects!(TestServer::start =>
    the_trail_is_listed_newest_first_filtered_and_paged,
    verification_catches_edits_deletions_reordering_and_rewrites,
    plugin_changes_are_audited_at_start_and_reload,
    a_change_whose_audit_record_cannot_be_written_is_refused,
);

creddy_testkit::dialects!(retained: one_day_of_audit =>
    records_past_the_retention_are_pruned_and_the_rest_still_verifies,
);

async fn one_day_of_audit(dialect: creddy_testkit::store::Dialect) -> TestServer {
    TestServer::start_with(dialect, |s| s.audit_retention_days = 1).await
}

async fn records_past_the_retention_are_pruned_and_the_rest_still_verifies(server: TestServer) {
    let (api, admin) = setup(&server).await;
    let old = verify(&api, &admin, "").await;
    assert_eq!(old["ok"], true, "{old}");
    let old_head = old["head_seq"].as_i64().unwrap_or_default();
    server.clock.advance_seconds(86_400 + 3_600);
    let young = api
        .post(
            "/v1/admin/agents",
            &admin,
            json!({"name": "young", "scopes": ["test"]}),
        )
        .await;
    assert_eq!(young.status, StatusCode::OK, "{}", young.text);
    server.server().state().tasks().sweep_now().await;
    let events = server.audit_events().await;
    let first = events.first().map(|e| e.seq).unwrap_or_default();
    assert_eq!(first, old_head + 1, "every record older than a day is gone");
    let pruned = events
        .iter()
        .find(|e| e.action == "audit.pruned")
        .map(|e| e.details.clone())
        .unwrap_or_default();
    assert_eq!(pruned["through_seq"], old_head, "{pruned}");
    assert_eq!(pruned["events"], old_head);
    let kept = verify(&api, &admin, "").await;
    assert_eq!(
        kept["ok"], true,
        "the kept chain verifies from its anchor: {kept}"
    );
    assert_eq!(kept["events"].as_i64(), Some(events.len() as i64));
    assert_eq!(
        kept["head_seq"],
        events.last().map(|e| e.seq).unwrap_or_default()
    );

    // Without the master key the anchor cannot be moved, forged or dropped.
    let anchor = server
        .query_raw_text("SELECT value FROM meta WHERE key = 'audit_anchor'")
        .await
        .unwrap_or_default();
    let moved: Value = {
        let mut a: Value = serde_json::from_str(&anchor).unwrap_or_default();
        a["seq"] = json!(old_head + 1);
        a["hash"] = json!(events[0].hash);
        a
    };
    server
        .execute_raw(&format!(
            "DELETE FROM audit_events WHERE seq = {}; UPDATE meta SET value = '{moved}' WHERE key = 'audit_anchor'",
            old_head + 1
        ))
        .await;
    let forged = verify(&api, &admin, "").await;
    assert_eq!(forged["ok"], false, "{forged}");
    assert!(
        forged["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("anchor"),
        "{forged}"
    );
    server
        .execute_raw("DELETE FROM meta WHERE key = 'audit_anchor'")
        .await;
    let dropped = verify(&api, &admin, "").await;
    assert_eq!(
        (dropped["ok"].clone(), dropped["broken_at_seq"].clone()),
        (json!(false), json!(old_head + 2)),
        "{dropped}"
    );
}

async fn setup(server: &TestServer) -> (Api, String) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    for name in ["alpha", "beta", "gamma"] {
        let created = api
            .post(
                "/v1/admin/agents",
                &admin,
                json!({"name": name, "scopes": ["test"]}),
            )
            .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    }
    api.delete("/v1/admin/agents/beta", &admin).await;
    (api, admin)
}

fn seqs(page: &Value) -> Vec<i64> {
    page.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["seq"].as_i64())
        .collect()
}

async fn the_trail_is_listed_newest_first_filtered_and_paged(server: TestServer) {
    let (api, admin) = setup(&server).await;
    let all = api.get("/v1/admin/audit", &admin).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let all_seqs = seqs(&all.body);
    // admin_token.created, policy.loaded, key.rotated (the first signing key), three
    // agent.created and one agent.deleted.
    assert_eq!(all_seqs.len(), 7, "{}", all.text);
    assert!(all_seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    let first = api.get("/v1/admin/audit?limit=2", &admin).await;
    assert_eq!(seqs(&first.body), all_seqs[..2]);
    let next = api
        .get(
            &format!("/v1/admin/audit?limit=2&before_seq={}", all_seqs[1]),
            &admin,
        )
        .await;
    assert_eq!(seqs(&next.body), all_seqs[2..4], "cursor paging");
    let beta = api.get("/v1/admin/audit?agent=beta", &admin).await;
    let actions: Vec<&str> = beta
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["agent.deleted", "agent.created"]);
    let created = api
        .get("/v1/admin/audit?action=agent_created", &admin)
        .await;
    assert_eq!(
        seqs(&created.body).len(),
        3,
        "the original's action names are accepted"
    );
    let recent = api.get("/v1/admin/audit?since=1h", &admin).await;
    assert_eq!(seqs(&recent.body).len(), 7);
    let none = api
        .get("/v1/admin/audit?until=2000-01-01T00:00:00Z", &admin)
        .await;
    assert_eq!(none.body, json!([]));
    assert_eq!(
        api.get("/v1/admin/audit?limit=5000", &admin).await.code(),
        "invalid_request"
    );
    assert_eq!(
        api.get("/v1/admin/audit?since=yesterday", &admin)
            .await
            .code(),
        "invalid_request"
    );
    let agent = all.body[0]["actor"].clone();
    assert_eq!(agent["type"], "local_admin");
}

async fn verify(api: &Api, admin: &str, query: &str) -> Value {
    let answer = api
        .get(&format!("/v1/admin/audit/verify{query}"), admin)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

async fn verification_catches_edits_deletions_reordering_and_rewrites(server: TestServer) {
    let (api, admin) = setup(&server).await;
    let intact = verify(&api, &admin, "").await;
    assert_eq!(intact["ok"], true, "{intact}");
    assert_eq!(intact["events"], 7);
    let head = intact["head_hash"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        verify(&api, &admin, &format!("?expect_head={head}")).await["ok"],
        true
    );

    // Reordered records, then put back.
    let swap = |a: i64, b: i64| {
        format!(
            "UPDATE audit_events SET seq = -1 WHERE seq = {a}; \
             UPDATE audit_events SET seq = {a} WHERE seq = {b}; \
             UPDATE audit_events SET seq = {b} WHERE seq = -1"
        )
    };
    server.execute_raw(&swap(4, 5)).await;
    let reordered = verify(&api, &admin, "").await;
    assert_eq!(reordered["broken_at_seq"], 4, "{reordered}");
    server.execute_raw(&swap(4, 5)).await;
    assert_eq!(verify(&api, &admin, "").await["ok"], true);

    // The newest record removed: only the recorded head shows it.
    server
        .execute_raw("DELETE FROM audit_events WHERE seq = 7")
        .await;
    assert_eq!(verify(&api, &admin, "").await["ok"], true);
    let truncated = verify(&api, &admin, &format!("?expect_head={head}")).await;
    assert_eq!(truncated["ok"], false, "{truncated}");
    assert!(
        truncated["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("newest events were removed")
    );

    // Edited content.
    server
        .execute_raw("UPDATE audit_events SET details = '{\"scopes\":[\"*\"]}' WHERE seq = 3")
        .await;
    let edited = verify(&api, &admin, "").await;
    assert_eq!(
        (edited["ok"].clone(), edited["broken_at_seq"].clone()),
        (json!(false), json!(3)),
        "{edited}"
    );
    assert!(
        edited["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("edited")
    );

    // Rewritten with a fresh SHA-256 chain but without the master key: the keyed hash fails.
    let original: Value = api.get("/v1/admin/audit?limit=1000", &admin).await.body;
    let third = original
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["seq"] == 3)
        .cloned()
        .unwrap_or_default();
    let mut record = third.clone();
    if let Value::Object(map) = &mut record {
        map.remove("hash");
    }
    let forged = creddy_core::audit::record_hash(&record);
    server
        .execute_raw(&format!(
            "UPDATE audit_events SET hash = '{forged}' WHERE seq = 3; \
             UPDATE audit_events SET prev_hash = '{forged}' WHERE seq = 4"
        ))
        .await;
    let rewritten = verify(&api, &admin, "").await;
    assert_eq!(rewritten["broken_at_seq"], 3, "{rewritten}");
    assert!(
        rewritten["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("keyed hash"),
        "{rewritten}"
    );

    // A deleted record.
    server
        .execute_raw("DELETE FROM audit_events WHERE seq <= 3")
        .await;
    let deleted = verify(&api, &admin, "").await;
    assert_eq!(deleted["broken_at_seq"], 4, "{deleted}");
    assert!(
        deleted["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("expected seq 1")
    );
}

async fn plugin_changes_are_audited_at_start_and_reload(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let installed = server.install_test_plugin("test");
    let reload = || async {
        let answer = api
            .post("/v1/admin/plugins/reload", &admin, json!({}))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        server
            .audit_events()
            .await
            .into_iter()
            .filter(|e| e.action.starts_with("plugin."))
            .map(|e| (e.action, e.details))
            .collect::<Vec<_>>()
    };
    let first = reload().await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, "plugin.installed");
    assert_eq!(first[0].1["sha256"], json!(installed.sha256));
    let second = reload().await;
    assert_eq!(second.last().map(|e| e.0.as_str()), Some("plugin.reloaded"));
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&installed.binary)
        .and_then(|mut f| f.write_all(b"tampered"))
        .expect("the installed binary is writable");
    let third = reload().await;
    let last = third.last().cloned().unwrap_or_default();
    assert_eq!(last.0, "plugin.integrity_failed", "{third:?}");
    assert_eq!(last.1["expected_sha256"], json!(installed.sha256));
    assert!(!third.iter().any(|e| e.0 == "plugin.removed"));
    let dir = installed
        .binary
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_default();
    std::fs::remove_dir_all(&dir).expect("the directory is removed");
    let fourth = reload().await;
    assert_eq!(
        fourth.last().map(|e| e.0.as_str()),
        Some("plugin.removed"),
        "{fourth:?}"
    );
}

async fn a_change_whose_audit_record_cannot_be_written_is_refused(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    server.break_audit().await;
    let refused = api
        .post(
            "/v1/admin/agents",
            &admin,
            json!({"name": "unaudited", "scopes": ["test"]}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        "{}",
        refused.text
    );
    assert!(
        !refused.text.contains("audit disk full"),
        "no raw database error reaches the caller"
    );
    assert_eq!(
        api.get("/v1/admin/agents/unaudited", &admin).await.status,
        StatusCode::NOT_FOUND,
        "the change was rolled back"
    );
    let metrics = api.get("/metrics", &admin).await;
    assert!(
        metrics.text.contains("creddy_audit_failures_total 1\n"),
        "{}",
        metrics.text
    );
}

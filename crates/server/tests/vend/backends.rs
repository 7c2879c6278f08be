//! Backends: saved only when their configuration works, back after a restart, drained on removal, and plugins reloaded.

use super::*;

creddy_testkit::dialects!(TestServer::start =>
    a_backend_is_saved_only_when_its_configuration_works,
    backends_come_back_after_a_restart,
    removing_a_backend_drains_it_through_the_revocation_queue,
    a_plugin_reload_restarts_backends_from_the_installed_binaries,
    plugins_are_listed_and_reloaded_one_at_a_time,
);

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

async fn backends_come_back_after_a_restart(server: TestServer) {
    let (mut site, token) = ready(server).await;
    site.server.restart().await;
    site.api = Api::new(&site.server.url());
    let answer = site.vend(&token, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let key = site.server.settings.data_dir.join("master.key");
    std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
        .expect("the file is written");
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
    .expect("the file is written");
    let listed = site.api.get("/v1/admin/plugins", &site.admin).await;
    assert_eq!(listed.body["plugins"][0]["state"], "integrity_failed");
}

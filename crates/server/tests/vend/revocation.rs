//! Revocation: at expiry, explicitly, after a mint of unknown outcome, with backoff to irrevocable and daily retries, across plugin crashes, and per-backend queues that a hanging upstream cannot block.

use super::*;

creddy_testkit::dialects!(TestServer::start =>
    expired_and_orphaned_credentials_are_revoked_upstream,
    explicit_revocation_is_idempotent_and_limited_to_the_owner,
    a_mint_with_an_unknown_outcome_is_reconciled_after_two_minutes,
    failing_revocations_back_off_then_become_irrevocable_and_are_retried_daily,
    a_plugin_crash_during_a_revocation_is_retried_after_its_restart,
    a_revocation_refused_for_good_is_irrevocable_at_once_and_retried_daily,
    a_hanging_upstream_holds_eight_revocations_and_never_delays_another_backend,
    a_lease_claimed_again_while_its_attempt_runs_is_not_tried_twice_at_once,
);

creddy_testkit::dialects!(three_slots: three_revocation_slots =>
    revocation_concurrency_sets_how_many_revocations_a_hanging_upstream_holds,
);

/// A node whose backends each revoke at most three leases at once.
async fn three_revocation_slots(dialect: Dialect) -> TestServer {
    TestServer::start_with(dialect, |s| s.revocation.concurrency = 3).await
}

/// A node never runs two revocations of one lease at once: when the lease's claim lapses
/// while its attempt still runs (a stalled upstream, a clock that jumped) and the reaper
/// claims it again, the running attempt keeps it. The upstream is a barrier that lets calls
/// through only when two arrive together, within two seconds: one attempt fails it.
async fn a_lease_claimed_again_while_its_attempt_runs_is_not_tried_twice_at_once(
    server: TestServer,
) {
    let (site, token) = ready(server).await;
    let lease = site.vend(&token, "?ttl=1m").await;
    assert_eq!(lease.status, StatusCode::OK, "{}", lease.text);
    let id = lease.body["id"].as_str().unwrap_or_default().to_owned();
    script(
        &site.upstream(),
        json!({"revoke_credential": "barrier:2:2000"}),
    );
    let arrived =
        |site: &Site| std::fs::read_dir(site.upstream().join("barrier")).map_or(0, |d| d.count());
    site.server.clock.advance_seconds(61);
    let state = site.server.server().state().clone();
    let first = tokio::spawn(async move { state.tasks().sweep_now().await });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while arrived(&site) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no attempt started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The claim lapses while the attempt waits at the barrier; the reaper claims it again.
    site.server.clock.advance_seconds(61);
    site.server.server().state().tasks().sweep_now().await;
    first.await.expect("the first sweep ends");
    assert_eq!(arrived(&site), 1, "a second attempt ran beside the first");
    let shown = site
        .api
        .get(&format!("/v1/admin/tokens/{id}"), &site.admin)
        .await;
    assert_eq!(shown.body["state"], "revoking", "{}", shown.text);
    assert_eq!(shown.body["attempts"], 1, "{}", shown.text);
    assert_eq!(site.revoked_upstream(), 0);
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
    let total = |name: &str| {
        metrics
            .text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or_default()
    };
    let (commits, writes) = (
        total("creddy_store_commits_total"),
        total("creddy_store_committed_writes_total"),
    );
    assert!(
        commits > 0 && writes >= commits,
        "group commit's totals: {commits} transactions, {writes} writes"
    );
    assert!(total("creddy_store_commit_busy_microseconds_total") > 0);
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
    a_hanging_upstream_holds(server, 8).await;
}

/// `revocation.concurrency = 3`: the hanging backend holds three slots, not the default eight.
async fn revocation_concurrency_sets_how_many_revocations_a_hanging_upstream_holds(
    server: TestServer,
) {
    a_hanging_upstream_holds(server, 3).await;
}

/// Twelve leases of a hanging backend and two of a working one expire together: exactly
/// `slots` revocations start on the hanging one, and the other's are done meanwhile.
async fn a_hanging_upstream_holds(server: TestServer, slots: usize) {
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
        if revoked.body.as_array().map(Vec::len) == Some(2) && started(&stuck_dir) == slots {
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
        slots,
        "at most {slots} revocations at once on the hanging backend"
    );
    let stuck_open = site
        .api
        .get("/v1/admin/tokens?backend=stuck&state=active", &site.admin)
        .await;
    assert_eq!(stuck_open.body.as_array().map(Vec::len), Some(12));
    sweeping.abort();
}

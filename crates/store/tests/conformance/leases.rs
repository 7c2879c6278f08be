//! Leases: intent to active or failed, claims by one node at a time, explicit revocation and forgetting, the quota under concurrency, paged listings.

use super::*;

creddy_testkit::dialects!(TestStore::new =>
    a_lease_goes_from_intent_to_active_or_failed_with_its_event,
    due_leases_are_claimed_by_one_node_at_a_time,
    an_explicit_revoke_claims_the_lease_and_an_irrevocable_one_can_be_forgotten,
    the_lease_quota_holds_for_concurrent_intents_on_two_handles,
    lease_listings_page_newest_first_with_a_cursor,
    a_stored_state_the_store_does_not_know_is_a_damaged_row,
    concurrent_vends_share_transactions_and_keep_each_quota,
    racing_activations_of_one_lease_activate_it_once,
);

/// Two activations of each of 30 leases, all at once (so most share a batch, whose
/// activations run as one statement): each lease is activated by exactly one of them, and
/// the chain holds one `credential.issued` per lease.
async fn racing_activations_of_one_lease_activate_it_once(db: TestStore) {
    with_backends(&db.store, &["alpha"]).await;
    let agent = new_agent("racer", &["alpha"], None);
    create(&db.store, &agent).await;
    let ids: Vec<creddy_core::ids::LeaseId> =
        (0..30).map(|i| lid(&format!("cred_race{i:02}"))).collect();
    for id in &ids {
        let intent = db
            .store
            .create_lease(&lease(id.as_str(), &agent), 100)
            .await;
        assert_eq!(intent.expect("intent"), Intent::Recorded);
    }
    let mut tasks = Vec::new();
    for id in ids.iter().chain(&ids) {
        let (store, id) = (db.store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let issued = AuditEvent::new(Action::CredentialIssued, Actor::system(), T0)
                .about_lease("alpha", Some(id.as_str()));
            let activated = store
                .activate_lease(&id, None, "sha", T0.plus_seconds(60), &issued)
                .await;
            (id, activated.is_ok())
        }));
    }
    let mut activations = std::collections::BTreeMap::new();
    for task in tasks {
        let (id, activated) = task.await.expect("the task ends");
        *activations.entry(id.to_string()).or_insert(0) += u32::from(activated);
    }
    assert!(
        activations.values().all(|n| *n == 1),
        "each lease activated once: {activations:?}"
    );
    for id in &ids {
        let state = db.store.lease_state(id).await.expect("state");
        assert_eq!(state, Some(LeaseState::Active), "{id}");
    }
    let events = db.store.recent_events(1000).await.expect("events");
    let issued = events
        .iter()
        .filter(|e| e.action == "credential.issued")
        .count();
    assert_eq!(issued, 30, "one credential.issued per lease");
}

/// Group commit of lease writes: 120 concurrent intents of two agents (quota 20 each) share
/// fewer transactions and record exactly 20 per agent; the 40 activations that follow, all at
/// once, each get their `credential.issued` in one gap-free chain.
async fn concurrent_vends_share_transactions_and_keep_each_quota(db: TestStore) {
    with_backends(&db.store, &["alpha"]).await;
    let agents = [
        new_agent("first", &["alpha"], None),
        new_agent("second", &["alpha"], None),
    ];
    for agent in &agents {
        create(&db.store, agent).await;
    }
    let before = db.store.commit_stats().transactions;
    let mut tasks = Vec::new();
    for i in 0..120 {
        let store = db.store.clone();
        let intent = lease(&format!("cred_{i:03}"), &agents[i % 2]);
        tasks.push(tokio::spawn(async move {
            let id = intent.id.clone();
            (id, store.create_lease(&intent, 20).await)
        }));
    }
    let mut recorded = Vec::new();
    for task in tasks {
        let (id, intent) = task.await.expect("the task ends");
        match intent.expect("an intent's outcome") {
            Intent::Recorded => recorded.push(id),
            Intent::QuotaReached(open) => assert_eq!(open, 20, "refused below the quota"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recorded.len(), 40, "20 per agent, no more, no fewer");
    for agent in &agents {
        let open = db
            .store
            .count_open_leases_of(&agent.id)
            .await
            .expect("count");
        assert_eq!(open, 20, "{}", agent.name);
    }
    let tasks: Vec<_> = recorded
        .iter()
        .map(|id| {
            let store = db.store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let issued = AuditEvent::new(Action::CredentialIssued, Actor::system(), T0)
                    .about_lease("alpha", Some(id.as_str()));
                store
                    .activate_lease(&id, None, "sha", T0.plus_seconds(60), &issued)
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task ends").expect("activated");
    }
    let batches = db.store.commit_stats().transactions - before;
    assert!(
        (1..160).contains(&batches),
        "160 concurrent lease writes took {batches} transactions"
    );
    let mut events = db.store.recent_events(1000).await.expect("events");
    events.reverse();
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e.action == "credential.issued")
        .collect();
    assert_eq!(issued.len(), 40, "one credential.issued per activation");
    let mut prev = events[0].prev_hash.clone();
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "gap-free");
    }
    for e in &events {
        assert_eq!(e.prev_hash, prev, "linked");
        prev = e.hash.clone();
    }
}

async fn a_lease_goes_from_intent_to_active_or_failed_with_its_event(db: TestStore) {
    with_backends(&db.store, &["alpha"]).await;
    let agent = new_agent("vendor", &["alpha"], None);
    create(&db.store, &agent).await;
    db.store
        .create_lease(&lease("cred_ok", &agent), 100)
        .await
        .expect("intent");
    db.store
        .create_lease(&lease("cred_bad", &agent), 100)
        .await
        .expect("intent");
    assert_eq!(
        db.store.lease_state(&lid("cred_ok")).await.expect("state"),
        Some(LeaseState::Pending)
    );
    assert_eq!(
        db.store
            .count_open_leases_of(&agent.id)
            .await
            .expect("count"),
        2
    );
    let issued = AuditEvent::new(Action::CredentialIssued, Actor::system(), T0)
        .about_lease("alpha", Some("cred_ok"));
    db.store
        .activate_lease(
            &lid("cred_ok"),
            Some("sealed"),
            "abc123",
            T0.plus_seconds(300),
            &issued,
        )
        .await
        .expect("activate");
    assert!(
        db.store
            .activate_lease(&lid("cred_ok"), None, "x", T0, &issued)
            .await
            .is_err(),
        "only a pending lease can be activated"
    );
    let failed = AuditEvent::new(Action::CredentialFailed, Actor::system(), T0)
        .about_lease("alpha", Some("cred_bad"));
    db.store
        .fail_lease(&lid("cred_bad"), "upstream down", &failed)
        .await
        .expect("fail");
    assert_eq!(
        db.store.lease_state(&lid("cred_ok")).await.expect("state"),
        Some(LeaseState::Active)
    );
    assert_eq!(
        db.store.lease_state(&lid("cred_bad")).await.expect("state"),
        Some(LeaseState::Failed)
    );
    let open = db.store.open_leases_of(&agent.id).await.expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0].expires_at,
        T0.plus_seconds(300),
        "the final expiry is recorded"
    );
    let events = db.store.recent_events(2).await.expect("events");
    assert_eq!(events[0].lease_id.as_deref(), Some("cred_bad"));
    assert_eq!(events[1].lease_id.as_deref(), Some("cred_ok"));
}

async fn due_leases_are_claimed_by_one_node_at_a_time(db: TestStore) {
    with_backends(&db.store, &["alpha", "beta"]).await;
    let agent = new_agent("claimer", &["alpha", "beta"], None);
    create(&db.store, &agent).await;
    for i in 0..12 {
        let mut intent = lease(&format!("cred_{i:02}"), &agent);
        intent.expires_at = T0.plus_seconds(60);
        issue(&db.store, &intent).await;
    }
    let mut other_backend = lease("cred_beta", &agent);
    other_backend.backend = "beta".into();
    other_backend.expires_at = T0.plus_seconds(90);
    issue(&db.store, &other_backend).await;
    assert_eq!(
        db.store.next_lease_due().await.expect("next"),
        Some(T0.plus_seconds(60))
    );
    let early = T0.plus_seconds(59);
    assert!(
        db.store.due_backends(early).await.expect("due").is_empty(),
        "nothing due yet"
    );
    assert!(
        db.store
            .claim_due_leases(early, 60_000, "alpha", 100)
            .await
            .expect("claim")
            .is_empty(),
        "nothing due yet"
    );
    let now = T0.plus_seconds(91);
    let mut due = db.store.due_backends(now).await.expect("due");
    due.sort();
    assert_eq!(due, ["alpha", "beta"]);
    let other = Store::open(db.location.clone()).await.expect("second node");
    let (a, b) = tokio::join!(
        db.store.claim_due_leases(now, 60_000, "alpha", 8),
        other.claim_due_leases(now, 60_000, "alpha", 8)
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    assert!(
        a.len() <= 8 && b.len() <= 8,
        "a claim takes at most its limit"
    );
    assert!(
        a.iter().chain(&b).all(|l| l.backend == "alpha"),
        "a claim takes one backend's leases"
    );
    let mut all: Vec<String> = a.iter().chain(&b).map(|l| l.id.to_string()).collect();
    all.extend(
        db.store
            .claim_due_leases(now, 60_000, "alpha", 100)
            .await
            .expect("claim the rest")
            .into_iter()
            .map(|l| l.id.to_string()),
    );
    assert_eq!(all.len(), 12, "every due lease claimed once: {all:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 12, "no lease claimed twice");
    assert_eq!(
        db.store.due_backends(now).await.expect("due"),
        ["beta"],
        "claims hold; the other backend's lease waits on its own"
    );
    assert_eq!(
        db.store.next_lease_due().await.expect("next"),
        Some(T0.plus_seconds(90)),
        "claims move the due time to their end"
    );
    let revoked = AuditEvent::new(Action::CredentialRevoked, Actor::system(), now);
    db.store
        .settle_lease(&lid("cred_00"), LeaseState::Revoked, now, &revoked)
        .await
        .expect("settle");
    let after_expiry = now.plus_seconds(61);
    let reclaimed = db
        .store
        .claim_due_leases(after_expiry, 60_000, "alpha", 100)
        .await
        .expect("claim");
    assert_eq!(
        reclaimed.len(),
        11,
        "a lapsed claim (a dead node's) is taken over; a settled lease is not"
    );
}

async fn an_explicit_revoke_claims_the_lease_and_an_irrevocable_one_can_be_forgotten(
    db: TestStore,
) {
    with_backends(&db.store, &["alpha"]).await;
    use creddy_store::Queued;
    let agent = new_agent("revoker", &["alpha"], None);
    create(&db.store, &agent).await;
    issue(&db.store, &lease("cred_live", &agent)).await;
    let now = T0.plus_seconds(10);
    let claimed = match db
        .store
        .queue_revocation(&lid("cred_live"), now, 60_000)
        .await
        .expect("queue")
    {
        Queued::Claimed(lease) => lease,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(claimed.state, LeaseState::Revoking);
    assert!(
        db.store
            .claim_due_leases(now.plus_seconds(30), 60_000, "alpha", 10)
            .await
            .expect("claim")
            .is_empty(),
        "the reaper leaves a lease the explicit revoke is working on"
    );
    assert_eq!(
        db.store
            .queue_revocation(&lid("cred_live"), now, 60_000)
            .await
            .expect("again"),
        Queued::State(LeaseState::Revoking),
        "repeating changes nothing"
    );
    assert_eq!(
        db.store
            .queue_revocation(&lid("cred_none"), now, 60_000)
            .await
            .expect("none"),
        Queued::Missing
    );
    let not_yet = AuditEvent::new(Action::CredentialForgotten, Actor::local_admin(), now);
    assert!(
        !db.store
            .forget_lease(&lid("cred_live"), "test", &not_yet)
            .await
            .expect("forget"),
        "only an irrevocable lease can be forgotten"
    );
    let gave_up = AuditEvent::new(Action::CredentialIrrevocable, Actor::system(), now);
    db.store
        .record_revoke_failure(
            &lid("cred_live"),
            now,
            "upstream_unavailable",
            Some(now.plus_seconds(86_400)),
            Some(LeaseState::Irrevocable),
            &gave_up,
        )
        .await
        .expect("irrevocable");
    assert_eq!(
        db.store
            .count_open_leases_by_backend()
            .await
            .expect("count"),
        [("alpha".to_owned(), LeaseState::Irrevocable, 1)]
    );
    let forgotten = AuditEvent::new(Action::CredentialForgotten, Actor::local_admin(), now);
    assert!(
        db.store
            .forget_lease(&lid("cred_live"), "key deleted by hand", &forgotten)
            .await
            .expect("forget")
    );
    assert_eq!(
        db.store
            .lease_state(&lid("cred_live"))
            .await
            .expect("state"),
        Some(LeaseState::Forgotten)
    );
    assert_eq!(db.store.next_lease_due().await.expect("next"), None);
    let events = db.store.recent_events(1).await.expect("events");
    assert_eq!(events[0].action, "credential.forgotten");
}

async fn the_lease_quota_holds_for_concurrent_intents_on_two_handles(db: TestStore) {
    with_backends(&db.store, &["alpha"]).await;
    let agent = new_agent("greedy", &["alpha"], None);
    create(&db.store, &agent).await;
    let other = Store::open(db.location.clone()).await.expect("second node");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let intent = lease(&format!("cred_{i:02}"), &agent);
        tasks.push(tokio::spawn(async move {
            store.create_lease(&intent, 10).await
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        match t.await.expect("join").expect("intent") {
            Intent::Recorded => recorded += 1,
            Intent::QuotaReached(open) => assert_eq!(open, 10),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recorded, 10, "exactly the quota was admitted");
    assert_eq!(
        db.store
            .count_open_leases_of(&agent.id)
            .await
            .expect("count"),
        10
    );
    db.store
        .delete_agent(
            &agent.id,
            &AuditEvent::new(Action::AgentDeleted, Actor::local_admin(), T0),
        )
        .await
        .expect("delete");
    assert_eq!(
        db.store
            .create_lease(&lease("cred_late", &agent), 10)
            .await
            .expect("intent"),
        Intent::AgentGone
    );
}

async fn lease_listings_page_newest_first_with_a_cursor(db: TestStore) {
    with_backends(&db.store, &["alpha"]).await;
    let agent = new_agent("pager", &["alpha"], None);
    create(&db.store, &agent).await;
    for i in 1..=5 {
        let intent = lease(&format!("cred_0{i}"), &agent);
        assert_eq!(
            db.store.create_lease(&intent, 100).await.expect("intent"),
            Intent::Recorded
        );
    }
    let mut seen = Vec::new();
    let mut filter = creddy_store::LeaseFilter {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = db.store.find_leases(&filter).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        filter.before = Some(last.id.to_string());
        seen.extend(page.iter().map(|l| l.id.to_string()));
    }
    assert_eq!(
        seen,
        ["cred_05", "cred_04", "cred_03", "cred_02", "cred_01"]
    );
}

/// Someone who writes to the database sets a lease's state, and a request's status, to names
/// creddy does not know: reads refuse them as damaged rows naming the column (never a
/// panic, never a guess at what was meant; the lease counts behind `/metrics` and `/health`
/// fail loudly), and an untouched lease still reads.
async fn a_stored_state_the_store_does_not_know_is_a_damaged_row(db: TestStore) {
    with_backends(&db.store, &["alpha"]).await;
    let agent = new_agent("vendor", &["alpha"], None);
    create(&db.store, &agent).await;
    for id in ["cred_forged", "cred_fine"] {
        db.store
            .create_lease(&lease(id, &agent), 100)
            .await
            .expect("intent");
    }
    db.execute_raw("UPDATE leases SET state = 'stolen' WHERE id = 'cred_forged'")
        .await;
    let damaged = |result: Result<_, StoreError>| match result {
        Err(StoreError::Corrupt(message)) => message,
        Ok(_) => panic!("a forged state was accepted"),
        Err(other) => panic!("expected a damaged row, got {other:?}"),
    };
    let message = damaged(db.store.lease_state(&lid("cred_forged")).await.map(drop));
    assert!(
        message.contains("leases.state") && message.contains("'stolen'"),
        "{message}"
    );
    damaged(db.store.count_open_leases_by_backend().await.map(drop));
    assert_eq!(
        db.store
            .lease_state(&lid("cred_fine"))
            .await
            .expect("state"),
        Some(LeaseState::Pending)
    );

    db.store
        .request_enrollment(
            &enrollment("enr_forged", "forged", EnrollmentStatus::Pending),
            None,
            10,
            &[],
        )
        .await
        .expect("request");
    db.execute_raw("UPDATE enrollments SET status = 'granted' WHERE id = 'enr_forged'")
        .await;
    let message = damaged(db.store.find_enrollment(&eid("enr_forged")).await.map(drop));
    assert!(message.contains("enrollments.status"), "{message}");
}

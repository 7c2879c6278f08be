//! Backends: sealed, listed and removed with audit; draining.

use super::*;

creddy_testkit::dialects!(TestStore::new =>
    backends_are_stored_sealed_listed_and_removed_with_audit,
    a_draining_backend_takes_no_new_lease_and_is_ready_once_its_leases_settle,
);

async fn backends_are_stored_sealed_listed_and_removed_with_audit(db: TestStore) {
    let added = || AuditEvent::new(Action::BackendAdded, Actor::local_admin(), T0);
    db.store
        .create_backend(&backend("zeta"), &added())
        .await
        .expect("create");
    db.store
        .create_backend(&backend("alpha"), &added())
        .await
        .expect("create");
    assert!(matches!(
        db.store.create_backend(&backend("alpha"), &added()).await,
        Err(StoreError::NameTaken)
    ));
    let names: Vec<String> = db
        .store
        .list_backends()
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let found = db
        .store
        .find_backend("zeta")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.sealed_config, "v1:abcd:sealed");
    let removed = || AuditEvent::new(Action::BackendRemoved, Actor::local_admin(), T0);
    assert!(
        db.store
            .delete_backend("zeta", &removed())
            .await
            .expect("delete")
    );
    assert!(
        !db.store
            .delete_backend("zeta", &removed())
            .await
            .expect("delete")
    );
    let actions: Vec<String> = db
        .store
        .recent_events(10)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["backend.removed", "backend.added", "backend.added"]
    );
}

async fn a_draining_backend_takes_no_new_lease_and_is_ready_once_its_leases_settle(db: TestStore) {
    let agent = new_agent("drained", &["alpha"], None);
    create(&db.store, &agent).await;
    with_backends(&db.store, &["alpha"]).await;
    issue(&db.store, &lease("cred_a", &agent)).await;
    issue(&db.store, &lease("cred_b", &agent)).await;
    let now = T0.plus_seconds(5);
    let draining = AuditEvent::new(Action::BackendRemoved, Actor::local_admin(), now);
    assert_eq!(
        db.store
            .drain_backend("alpha", now, &draining)
            .await
            .expect("drain"),
        Some(2)
    );
    assert_eq!(
        db.store
            .drain_backend("nope", now, &draining)
            .await
            .expect("drain"),
        None
    );
    assert_eq!(
        db.store
            .create_lease(&lease("cred_c", &agent), 100)
            .await
            .expect("refused"),
        Intent::BackendUnavailable,
        "a draining backend takes no new lease"
    );
    assert_eq!(
        db.store.lease_state(&lid("cred_c")).await.expect("state"),
        None
    );
    let mut elsewhere = lease("cred_d", &agent);
    elsewhere.backend = "ghost".into();
    assert_eq!(
        db.store
            .create_lease(&elsewhere, 100)
            .await
            .expect("refused"),
        Intent::BackendUnavailable,
        "a lease needs a configured backend"
    );
    let queued = db
        .store
        .claim_due_leases(now, 60_000, "alpha", 10)
        .await
        .expect("claim");
    assert_eq!(queued.len(), 2, "both leases are due at once");
    assert!(queued.iter().all(|l| l.state == LeaseState::Revoking));
    assert!(
        db.store
            .drained_backends()
            .await
            .expect("drained")
            .is_empty()
    );
    for lease in &queued {
        let revoked = AuditEvent::new(Action::CredentialRevoked, Actor::system(), now);
        db.store
            .settle_lease(&lease.id, LeaseState::Revoked, now, &revoked)
            .await
            .expect("settle");
    }
    assert_eq!(
        db.store.drained_backends().await.expect("drained"),
        ["alpha"]
    );
}

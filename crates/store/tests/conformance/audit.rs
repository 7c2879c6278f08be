//! The audit trail: one linked event per change, rollback when it cannot be written, a gap-free chain under concurrent writers, shared facts.

use super::*;

creddy_testkit::dialects!(TestStore::new =>
    every_change_appends_one_linked_audit_event,
    a_failed_audit_write_rolls_the_change_back,
    concurrent_writers_on_two_handles_keep_the_chain_gap_free,
    shared_facts_are_set_once,
    the_audit_key_never_prints,
    concurrent_events_are_committed_together_in_order,
    a_refused_batch_refuses_every_event_in_it,
);

fn token_issued(i: usize) -> AuditEvent {
    AuditEvent::new(Action::TokenIssued, Actor::system(), T0)
        .with_details(serde_json::json!({"n": i}))
}

/// Group commit: 200 events recorded at once share fewer transactions, each caller gets its
/// own sequence number, and the chain holds them all, gap-free and linked.
async fn concurrent_events_are_committed_together_in_order(db: TestStore) {
    let before = db.store.commit_stats().transactions;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move { store.record_event(&token_issued(i)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.expect("the task ends").expect("recorded"));
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<i64>>(),
        "one sequence number each"
    );
    let batches = db.store.commit_stats().transactions - before;
    assert!(
        (1..200).contains(&batches),
        "200 concurrent events took {batches} transactions"
    );
    let mut events = db.store.recent_events(1000).await.expect("events");
    events.reverse();
    assert_eq!(events.len(), 200);
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "gap-free");
        assert_eq!(e.prev_hash, prev, "linked");
        prev = e.hash.clone();
    }
}

/// When a batch's transaction fails, none of its events is acknowledged and none is written.
async fn a_refused_batch_refuses_every_event_in_it(db: TestStore) {
    db.store
        .record_event(&token_issued(0))
        .await
        .expect("the first event");
    db.execute_raw(db.break_audit_sql()).await;
    let tasks: Vec<_> = (1..=20)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move { store.record_event(&token_issued(i)).await })
        })
        .collect();
    for task in tasks {
        assert!(
            task.await.expect("the task ends").is_err(),
            "an event was acknowledged from a failed transaction"
        );
    }
}

/// Whoever logs the store with `{:?}` learns nothing of the key of the keyed hashes.
async fn the_audit_key_never_prints(db: TestStore) {
    db.store.set_audit_key([0xA7; 32]);
    let printed = format!("{:?}", db.store);
    assert!(printed.contains("audit_key"), "{printed}");
    for leak in ["167", "a7a7", "A7A7"] {
        assert!(!printed.contains(leak), "the key shows in: {printed}");
    }
}

async fn every_change_appends_one_linked_audit_event(db: TestStore) {
    let a = new_agent("a", &["daytona"], None);
    let b = new_agent("b", &["daytona"], None);
    create(&db.store, &a).await;
    create(&db.store, &b).await;
    let deleted = AuditEvent::new(Action::AgentDeleted, Actor::system(), T0)
        .about_agent(a.id.as_str(), "a")
        .with_details(serde_json::json!({"reason": "admin"}));
    db.store
        .delete_agent(&a.id, &deleted)
        .await
        .expect("delete");
    let mut events = db.store.recent_events(10).await.expect("events");
    events.reverse();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["agent.created", "agent.created", "agent.deleted"]);
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.prev_hash, prev);
        prev = e.hash.clone();
    }
    assert_eq!(events[2].details["reason"], "admin");
    assert_eq!(
        events[2].subject.as_ref().map(|s| s["agent_name"].clone()),
        Some("a".into())
    );
    assert_eq!(events[0].actor["type"], "local_admin");
}

async fn a_failed_audit_write_rolls_the_change_back(db: TestStore) {
    let kept = new_agent("kept", &["daytona"], None);
    create(&db.store, &kept).await;
    db.execute_raw(db.break_audit_sql()).await;
    let agent = new_agent("doomed", &["daytona"], None);
    match db.store.create_agent(&agent, &created(&agent)).await {
        Err(StoreError::AuditUnavailable(_)) => {}
        other => panic!("expected AuditUnavailable, got {other:?}"),
    }
    assert!(
        db.store
            .find_agent_by_name("doomed")
            .await
            .expect("query")
            .is_none()
    );
    let deleted = AuditEvent::new(Action::AgentDeleted, Actor::system(), T0);
    assert!(matches!(
        db.store.delete_agent(&kept.id, &deleted).await,
        Err(StoreError::AuditUnavailable(_))
    ));
    assert!(
        db.store
            .find_agent_by_name("kept")
            .await
            .expect("query")
            .is_some(),
        "nothing lost"
    );
}

async fn concurrent_writers_on_two_handles_keep_the_chain_gap_free(db: TestStore) {
    let other = Store::open(db.location.clone()).await.expect("second node");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let agent = new_agent(&format!("agent-{i}"), &["daytona"], None);
            store
                .create_agent(&agent, &created(&agent))
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("create");
    }
    let mut events = db.store.recent_events(100).await.expect("events");
    events.reverse();
    assert_eq!(events.len(), 24);
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "gap-free");
        assert_eq!(e.prev_hash, prev, "linked");
        prev = e.hash.clone();
    }
    assert_eq!(db.store.count_agents().await.expect("count"), 24);
}

async fn shared_facts_are_set_once(db: TestStore) {
    assert_eq!(db.store.meta("key_check").await.expect("meta"), None);
    assert_eq!(
        db.store
            .meta_insert_if_absent("key_check", "first")
            .await
            .expect("set"),
        "first"
    );
    assert_eq!(
        db.store
            .meta_insert_if_absent("key_check", "second")
            .await
            .expect("set"),
        "first"
    );
}

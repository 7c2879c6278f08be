//! One suite, two dialects: `dialects!` instantiates every test for SQLite and PostgreSQL.

use creddy_core::agent::NewAgent;
use creddy_core::audit::{Action, Actor, AuditEvent, GENESIS_HASH};
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::lease::LeaseState;
use creddy_core::names::AgentName;
use creddy_core::scope::Grants;
use creddy_core::{Duration, Timestamp};
use creddy_store::{Intent, Store, StoreError};
use creddy_testkit::store::TestStore;

creddy_testkit::dialects!(TestStore::new =>
    migrations_are_idempotent_and_a_newer_schema_is_refused,
    agents_are_found_by_name_in_any_case_and_by_token_hash,
    names_are_unique_case_insensitively_and_a_refusal_leaves_no_trace,
    every_change_appends_one_linked_audit_event,
    a_failed_audit_write_rolls_the_change_back,
    deleting_an_agent_queues_its_open_leases,
    expired_agents_are_listed_in_expiry_order,
    last_use_is_recorded_at_most_once_a_minute,
    concurrent_writers_on_two_handles_keep_the_chain_gap_free,
    backends_are_stored_sealed_listed_and_removed_with_audit,
    a_lease_goes_from_intent_to_active_or_failed_with_its_event,
    shared_facts_are_set_once,
    due_leases_are_claimed_by_one_node_at_a_time,
    an_explicit_revoke_claims_the_lease_and_an_irrevocable_one_can_be_forgotten,
    a_draining_backend_takes_no_new_lease_and_is_ready_once_its_leases_settle,
    enrollments_go_from_request_to_one_pickup_or_expiry,
    the_lease_quota_holds_for_concurrent_intents_on_two_handles,
    lease_listings_page_newest_first_with_a_cursor,
);

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn new_agent(name: &str, scopes: &[&str], lifetime: Option<&str>) -> NewAgent {
    let name = AgentName::parse(name).expect("valid name");
    let scopes = Grants::parse(scopes).expect("valid scopes");
    let lifetime = lifetime.map(|l| Duration::parse(l).expect("valid duration"));
    NewAgent::prepare(name, scopes, lifetime, T0).0
}

fn created(agent: &NewAgent) -> AuditEvent {
    AuditEvent::new(Action::AgentCreated, Actor::local_admin(), T0)
        .about_agent(agent.id.as_str(), agent.name.as_str())
}

async fn create(store: &Store, agent: &NewAgent) {
    store
        .create_agent(agent, &created(agent))
        .await
        .expect("create agent");
}

async fn migrations_are_idempotent_and_a_newer_schema_is_refused(db: TestStore) {
    let second = Store::open(db.location.clone()).await.expect("reopen");
    second.ping().await.expect("ping");
    second.close().await;
    db.execute_raw("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)")
        .await;
    match Store::open(db.location.clone()).await {
        Err(StoreError::SchemaTooNew {
            found: 999,
            supported: 9,
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

async fn agents_are_found_by_name_in_any_case_and_by_token_hash(db: TestStore) {
    let (agent, secrets) = NewAgent::prepare(
        AgentName::parse("CI-Agent").expect("valid"),
        Grants::parse(&["daytona", "admin:agents:read"]).expect("valid"),
        None,
        T0,
    );
    create(&db.store, &agent).await;
    let found = db
        .store
        .find_agent_by_name("ci-agent")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.id, agent.id);
    assert_eq!(found.name, "CI-Agent");
    assert_eq!(
        found.scopes.to_strings(),
        vec!["admin:agents:read", "daytona"]
    );
    let (by_token, stored) = db
        .store
        .find_agent_by_token_hash(&secrets.token.hash())
        .await
        .expect("query")
        .expect("found");
    assert_eq!(by_token, found);
    assert!(stored.matches(&secrets.token.hash()));
    let other = creddy_core::secret::SecretToken::generate(creddy_core::secret::TokenKind::Vend);
    assert!(
        db.store
            .find_agent_by_token_hash(&other.hash())
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        db.store
            .find_agent_by_name("nobody")
            .await
            .expect("query")
            .is_none()
    );
}

async fn names_are_unique_case_insensitively_and_a_refusal_leaves_no_trace(db: TestStore) {
    create(&db.store, &new_agent("builder", &["daytona"], None)).await;
    let twin = new_agent("BUILDER", &["daytona"], None);
    match db.store.create_agent(&twin, &created(&twin)).await {
        Err(StoreError::NameTaken) => {}
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert_eq!(db.store.count_agents().await.expect("count"), 1);
    let events = db.store.recent_events(10).await.expect("events");
    assert_eq!(events.len(), 1, "the refused create wrote no audit event");
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

async fn deleting_an_agent_queues_its_open_leases(db: TestStore) {
    let agent = new_agent("leaser", &["daytona"], None);
    create(&db.store, &agent).await;
    let id = agent.id.as_str();
    db.execute_raw(&format!(
        "INSERT INTO leases (id, agent_id, agent_name, backend, scopes, state, created_at, expires_at) VALUES \
         ('cred_1', '{id}', 'leaser', 'daytona', '[\"daytona\"]', 'active', 1, 2), \
         ('cred_2', '{id}', 'leaser', 'daytona', '[\"daytona\"]', 'pending', 1, 3), \
         ('cred_3', '{id}', 'leaser', 'daytona', '[\"daytona\"]', 'revoked', 1, 2)"
    ))
    .await;
    let listing = db.store.list_agents().await.expect("list");
    assert_eq!(listing[0].active_leases, 2);
    let open = db.store.open_leases_of(&agent.id).await.expect("leases");
    assert_eq!(
        open.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        ["cred_1", "cred_2"]
    );
    let event = AuditEvent::new(Action::AgentDeleted, Actor::local_admin(), T0);
    assert_eq!(
        db.store
            .delete_agent(&agent.id, &event)
            .await
            .expect("delete"),
        Some(2)
    );
    assert_eq!(
        db.store
            .delete_agent(&agent.id, &event)
            .await
            .expect("delete"),
        None
    );
    assert!(
        db.store
            .open_leases_of(&agent.id)
            .await
            .expect("leases")
            .is_empty()
    );
    assert_eq!(
        db.store.recent_events(10).await.expect("events").len(),
        2,
        "no event for a no-op"
    );
}

async fn expired_agents_are_listed_in_expiry_order(db: TestStore) {
    assert_eq!(db.store.next_agent_expiry().await.expect("next"), None);
    create(&db.store, &new_agent("forever", &[], None)).await;
    create(&db.store, &new_agent("long", &[], Some("2h"))).await;
    create(&db.store, &new_agent("short", &[], Some("1h"))).await;
    assert_eq!(
        db.store.next_agent_expiry().await.expect("next"),
        Some(T0.plus_seconds(3600))
    );
    let names = |agents: Vec<creddy_core::agent::Agent>| {
        agents.into_iter().map(|a| a.name).collect::<Vec<_>>()
    };
    let none = db
        .store
        .expired_agents(T0.plus_seconds(3599), 10)
        .await
        .expect("q");
    assert!(none.is_empty());
    let one = db
        .store
        .expired_agents(T0.plus_seconds(3600), 10)
        .await
        .expect("q");
    assert_eq!(names(one), ["short"]);
    let both = db
        .store
        .expired_agents(T0.plus_seconds(86_400), 10)
        .await
        .expect("q");
    assert_eq!(names(both), ["short", "long"]);
    let limited = db
        .store
        .expired_agents(T0.plus_seconds(86_400), 1)
        .await
        .expect("q");
    assert_eq!(names(limited), ["short"]);
}

async fn last_use_is_recorded_at_most_once_a_minute(db: TestStore) {
    let agent = new_agent("busy", &[], None);
    create(&db.store, &agent).await;
    let last_used = || async {
        db.store
            .find_agent_by_name("busy")
            .await
            .expect("q")
            .expect("found")
            .last_used
    };
    assert_eq!(last_used().await, None);
    db.store.touch_agent(&agent.id, T0).await.expect("touch");
    assert_eq!(last_used().await, Some(T0));
    db.store
        .touch_agent(&agent.id, T0.plus_seconds(30))
        .await
        .expect("touch");
    assert_eq!(last_used().await, Some(T0), "within a minute: unchanged");
    db.store
        .touch_agent(&agent.id, T0.plus_seconds(61))
        .await
        .expect("touch");
    assert_eq!(last_used().await, Some(T0.plus_seconds(61)));
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

fn backend(name: &str) -> creddy_store::BackendRecord {
    creddy_store::BackendRecord {
        id: format!("be_{name}"),
        name: name.into(),
        plugin: "test".into(),
        plugin_version: "0.1.0".into(),
        sealed_config: "v1:abcd:sealed".into(),
        state: "active".into(),
        created_at: T0,
        open_leases: 0,
    }
}

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

fn lease(id: &str, agent: &NewAgent) -> creddy_store::NewLease {
    creddy_store::NewLease {
        id: id.into(),
        agent_id: agent.id.as_str().into(),
        agent_name: agent.name.as_str().into(),
        backend: "alpha".into(),
        scopes: vec!["alpha".into()],
        ttl_seconds: 600,
        created_at: T0,
        expires_at: T0.plus_seconds(600),
    }
}

/// Configures backends, so that leases may be created for them.
async fn with_backends(store: &Store, names: &[&str]) {
    for name in names {
        let added = AuditEvent::new(Action::BackendAdded, Actor::local_admin(), T0);
        store
            .create_backend(&backend(name), &added)
            .await
            .expect("create backend");
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
        db.store.lease_state("cred_ok").await.expect("state"),
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
            "cred_ok",
            Some("sealed"),
            "abc123",
            T0.plus_seconds(300),
            &issued,
        )
        .await
        .expect("activate");
    assert!(
        db.store
            .activate_lease("cred_ok", None, "x", T0, &issued)
            .await
            .is_err(),
        "only a pending lease can be activated"
    );
    let failed = AuditEvent::new(Action::CredentialFailed, Actor::system(), T0)
        .about_lease("alpha", Some("cred_bad"));
    db.store
        .fail_lease("cred_bad", "upstream down", &failed)
        .await
        .expect("fail");
    assert_eq!(
        db.store.lease_state("cred_ok").await.expect("state"),
        Some(LeaseState::Active)
    );
    assert_eq!(
        db.store.lease_state("cred_bad").await.expect("state"),
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

async fn issue(store: &Store, intent: &creddy_store::NewLease) {
    assert_eq!(
        store.create_lease(intent, 100).await.expect("intent"),
        Intent::Recorded
    );
    let issued = AuditEvent::new(Action::CredentialIssued, Actor::system(), T0);
    store
        .activate_lease(&intent.id, None, "h", intent.expires_at, &issued)
        .await
        .expect("activate");
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
    let mut all: Vec<String> = a.iter().chain(&b).map(|l| l.id.clone()).collect();
    all.extend(
        db.store
            .claim_due_leases(now, 60_000, "alpha", 100)
            .await
            .expect("claim the rest")
            .into_iter()
            .map(|l| l.id),
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
        .settle_lease("cred_00", LeaseState::Revoked, now, &revoked)
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
        .queue_revocation("cred_live", now, 60_000)
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
            .queue_revocation("cred_live", now, 60_000)
            .await
            .expect("again"),
        Queued::State(LeaseState::Revoking),
        "repeating changes nothing"
    );
    assert_eq!(
        db.store
            .queue_revocation("cred_none", now, 60_000)
            .await
            .expect("none"),
        Queued::Missing
    );
    let not_yet = AuditEvent::new(Action::CredentialForgotten, Actor::local_admin(), now);
    assert!(
        !db.store
            .forget_lease("cred_live", "test", &not_yet)
            .await
            .expect("forget"),
        "only an irrevocable lease can be forgotten"
    );
    let gave_up = AuditEvent::new(Action::CredentialIrrevocable, Actor::system(), now);
    db.store
        .record_revoke_failure(
            "cred_live",
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
            .forget_lease("cred_live", "key deleted by hand", &forgotten)
            .await
            .expect("forget")
    );
    assert_eq!(
        db.store.lease_state("cred_live").await.expect("state"),
        Some(LeaseState::Forgotten)
    );
    assert_eq!(db.store.next_lease_due().await.expect("next"), None);
    let events = db.store.recent_events(1).await.expect("events");
    assert_eq!(events[0].action, "credential.forgotten");
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
    assert_eq!(db.store.lease_state("cred_c").await.expect("state"), None);
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

fn enrollment(id: &str, name: &str, status: EnrollmentStatus) -> creddy_store::NewEnrollment {
    creddy_store::NewEnrollment {
        id: id.into(),
        kind: EnrollmentKind::Enroll,
        name: name.into(),
        agent_id: None,
        scopes: vec!["alpha".into()],
        status,
        policy: None,
        reason: None,
        ip: Some("127.0.0.1".into()),
        secret_hash: Some(
            creddy_core::secret::SecretToken::generate(
                creddy_core::secret::TokenKind::EnrollmentSecret,
            )
            .hash(),
        ),
        created_at: T0,
        expires_at: T0.plus_seconds(86_400),
        decided_by: None,
    }
}

async fn enrollments_go_from_request_to_one_pickup_or_expiry(db: TestStore) {
    let event = |a| AuditEvent::new(a, Actor::system(), T0);
    let requested = || [event(Action::EnrollmentRequested)];
    create(&db.store, &new_agent("taken", &["alpha"], None)).await;
    assert!(matches!(
        db.store
            .request_enrollment(
                &enrollment("enr_0", "TAKEN", EnrollmentStatus::Pending),
                None,
                10,
                &requested()
            )
            .await,
        Err(StoreError::NameTaken)
    ));
    let first = enrollment("enr_1", "ci-agent", EnrollmentStatus::Pending);
    db.store
        .request_enrollment(&first, None, 10, &requested())
        .await
        .expect("request");
    assert!(
        matches!(
            db.store
                .request_enrollment(
                    &enrollment("enr_2", "CI-Agent", EnrollmentStatus::Pending),
                    None,
                    10,
                    &requested()
                )
                .await,
            Err(StoreError::NameTaken)
        ),
        "a name is free only once among open enrollments"
    );
    assert!(matches!(
        db.store
            .request_enrollment(
                &enrollment("enr_3", "other", EnrollmentStatus::Pending),
                None,
                1,
                &requested()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let found = db
        .store
        .find_enrollment_by_secret(first.secret_hash.as_ref().expect("secret"))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.status.as_str()),
        ("enr_1", "pending")
    );
    assert_eq!(
        db.store.pending_enrollments().await.expect("pending").len(),
        1
    );

    let mut agent = new_agent("ci-agent", &["alpha"], None);
    agent.policy = Some("ci".into());
    let pickup = T0.plus_seconds(3_600);
    db.store
        .approve_enrollment(
            "enr_1",
            &agent,
            "local_admin",
            pickup,
            &[event(Action::EnrollmentApproved)],
        )
        .await
        .expect("approve");
    assert!(matches!(
        db.store
            .approve_enrollment("enr_1", &agent, "local_admin", pickup, &[])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        db.store.count_agents_of_policy("ci").await.expect("count"),
        1
    );
    let token = creddy_core::secret::SecretToken::generate(creddy_core::secret::TokenKind::Vend);
    let secret =
        creddy_core::secret::SecretToken::generate(creddy_core::secret::TokenKind::ClientSecret);
    let claim = |at| {
        let (t, s) = (token.hash(), secret.hash());
        let store = db.store.clone();
        async move {
            store
                .claim_enrollment(
                    "enr_1",
                    &t,
                    &s,
                    at,
                    &AuditEvent::new(Action::EnrollmentClaimed, Actor::system(), at),
                )
                .await
                .expect("claim")
        }
    };
    assert!(!claim(pickup).await, "not after the pickup deadline");
    assert!(claim(T0.plus_seconds(10)).await);
    assert!(
        !claim(T0.plus_seconds(11)).await,
        "credentials are handed out once"
    );
    let by_token = db
        .store
        .find_agent_by_token_hash(&token.hash())
        .await
        .expect("find");
    assert_eq!(by_token.map(|(a, _)| a.id), Some(agent.id.clone()));

    // An approval nobody picks up expires and takes its agent along.
    db.store
        .request_enrollment(
            &enrollment("enr_4", "lazy", EnrollmentStatus::Pending),
            None,
            10,
            &requested(),
        )
        .await
        .expect("request");
    let lazy = new_agent("lazy", &["alpha"], None);
    db.store
        .approve_enrollment("enr_4", &lazy, "local_admin", pickup, &[])
        .await
        .expect("approve");
    let lapsed = db
        .store
        .lapsed_enrollments(pickup, 10)
        .await
        .expect("lapsed");
    assert_eq!(
        lapsed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["enr_4"]
    );
    assert!(
        db.store
            .close_enrollment(
                "enr_4",
                EnrollmentStatus::Expired,
                None,
                "system",
                pickup,
                &[event(Action::EnrollmentExpired)]
            )
            .await
            .expect("expire")
    );
    assert!(
        db.store
            .find_agent_by_name("lazy")
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        !db.store
            .close_enrollment(
                "enr_4",
                EnrollmentStatus::Rejected,
                None,
                "local_admin",
                pickup,
                &[],
            )
            .await
            .expect("again"),
        "a closed request stays closed"
    );

    // Amendments merge scopes into the agent.
    let mut amendment = enrollment("enr_5", "ci-agent", EnrollmentStatus::Pending);
    amendment.kind = EnrollmentKind::Amendment;
    amendment.agent_id = Some(agent.id.as_str().into());
    amendment.secret_hash = None;
    db.store
        .request_enrollment(&amendment, None, 10, &requested())
        .await
        .expect("amend");
    assert_eq!(
        db.store
            .pending_amendments_of(&agent.id)
            .await
            .expect("list")
            .len(),
        1
    );
    db.store
        .approve_amendment(
            "enr_5",
            &agent.id,
            &["alpha".into(), "beta".into()],
            "local_admin",
            T0,
            |_| Vec::new(),
        )
        .await
        .expect("approve amendment");
    let amended = db
        .store
        .find_agent_by_name("ci-agent")
        .await
        .expect("find")
        .expect("agent");
    assert_eq!(amended.scopes.to_strings(), ["alpha", "beta"]);
    assert_eq!(
        db.store
            .count_policy_approvals_since("ci", T0)
            .await
            .expect("count"),
        0
    );
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
        filter.before = Some(last.id.clone());
        seen.extend(page.iter().map(|l| l.id.clone()));
    }
    assert_eq!(
        seen,
        ["cred_05", "cred_04", "cred_03", "cred_02", "cred_01"]
    );
}

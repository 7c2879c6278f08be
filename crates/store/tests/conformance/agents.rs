//! Agents: migrations, lookups by name and token hash, unique names, removal with open leases, expiry, last use.

use super::*;

creddy_testkit::dialects!(TestStore::new =>
    migrations_are_idempotent_and_a_newer_schema_is_refused,
    agents_are_found_by_name_in_any_case_and_by_token_hash,
    names_are_unique_case_insensitively_and_a_refusal_leaves_no_trace,
    deleting_an_agent_queues_its_open_leases,
    expired_agents_are_listed_in_expiry_order,
    last_use_is_recorded_at_most_once_a_minute,
    a_federated_agent_is_refreshed_by_its_trust_and_never_takes_over_another,
);

/// §18: a token exchange creates its federated agent, refreshes it (scopes from the trust,
/// expiry only ever later), and fails with `NameTaken` and no change when the name belongs
/// to an ordinary agent or another trust's: the attack of a workload whose claims render an
/// existing agent's name.
async fn a_federated_agent_is_refreshed_by_its_trust_and_never_takes_over_another(db: TestStore) {
    let federated = |name: &str, trust: &str, scopes: &[&str], lifetime: &str| {
        let mut agent = new_agent(name, scopes, Some(lifetime));
        agent.trust = Some(trust.to_owned());
        agent
    };
    let event = || AuditEvent::new(Action::AgentFederated, Actor::system(), T0);
    let first = federated("gh-acme-widgets", "github", &["alpha"], "1h");
    let made = db
        .store
        .federate_agent(&first, &event())
        .await
        .expect("created");
    assert_eq!(made.trust.as_deref(), Some("github"));
    let again = federated("GH-acme-widgets", "github", &["alpha", "beta"], "2h");
    let refreshed = db
        .store
        .federate_agent(&again, &event())
        .await
        .expect("refreshed");
    assert_eq!(refreshed.id, made.id, "the same agent");
    assert_eq!(
        refreshed.scopes.to_strings(),
        ["alpha", "beta"],
        "scopes from the trust"
    );
    assert_eq!(refreshed.expires_at, Some(T0.plus_seconds(7_200)));
    let shorter = federated("gh-acme-widgets", "github", &["alpha"], "1m");
    let kept = db
        .store
        .federate_agent(&shorter, &event())
        .await
        .expect("refreshed");
    assert_eq!(
        kept.expires_at,
        Some(T0.plus_seconds(7_200)),
        "never earlier"
    );

    let ordinary = new_agent("gh-acme-gadgets", &["alpha"], None);
    create(&db.store, &ordinary).await;
    let events_before = db.store.recent_events(100).await.expect("events").len();
    for (name, trust) in [("gh-acme-gadgets", "github"), ("gh-acme-widgets", "gitlab")] {
        let taker = federated(name, trust, &["alpha", "admin:*"], "1h");
        let refused = db.store.federate_agent(&taker, &event()).await;
        assert!(
            matches!(refused, Err(StoreError::NameTaken)),
            "{name} {trust}: {refused:?}"
        );
    }
    let untouched = db
        .store
        .find_agent_by_name("gh-acme-gadgets")
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(untouched.trust, None);
    assert_eq!(untouched.scopes.to_strings(), ["alpha"]);
    assert_eq!(untouched.id, ordinary.id);
    let events = db.store.recent_events(100).await.expect("events");
    assert_eq!(events.len(), events_before, "a refusal records nothing");
    let federated_events = events
        .iter()
        .filter(|e| e.action == "agent.federated")
        .count();
    assert_eq!(federated_events, 3, "creation and both refreshes");
    let refreshed: Vec<bool> = events
        .iter()
        .rev()
        .filter(|e| e.action == "agent.federated")
        .map(|e| e.details["refreshed"] == true)
        .collect();
    assert_eq!(refreshed, [false, true, true]);
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
            supported: 10,
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

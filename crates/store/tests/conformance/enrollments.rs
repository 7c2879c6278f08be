//! Enrollments and amendments: from request to one pickup or expiry.

use super::*;

creddy_testkit::dialects!(TestStore::new =>
    enrollments_go_from_request_to_one_pickup_or_expiry,
);

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
            &eid("enr_1"),
            &agent,
            "local_admin",
            pickup,
            &[event(Action::EnrollmentApproved)],
        )
        .await
        .expect("approve");
    assert!(matches!(
        db.store
            .approve_enrollment(&eid("enr_1"), &agent, "local_admin", pickup, &[])
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
                    &eid("enr_1"),
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
        .approve_enrollment(&eid("enr_4"), &lazy, "local_admin", pickup, &[])
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
                &eid("enr_4"),
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
                &eid("enr_4"),
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
            &eid("enr_5"),
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

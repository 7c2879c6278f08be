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

mod agents;
mod audit;
mod backends;
mod enrollments;
mod leases;

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

/// An enrollment id as the tests name them (the store takes any stored id).
fn eid(id: &str) -> creddy_core::ids::EnrollmentId {
    creddy_core::ids::EnrollmentId::from_stored(id.to_owned())
}

/// A lease id as the tests name them (the store takes any stored id).
fn lid(id: &str) -> creddy_core::ids::LeaseId {
    creddy_core::ids::LeaseId::from_stored(id.to_owned())
}

fn backend(name: &str) -> creddy_store::BackendRecord {
    creddy_store::BackendRecord {
        id: creddy_core::ids::BackendId::from_stored(format!("be_{name}")),
        name: name.into(),
        plugin: "test".into(),
        plugin_version: "0.1.0".into(),
        sealed_config: "v1:abcd:sealed".into(),
        state: creddy_core::backend::BackendState::Active,
        created_at: T0,
        open_leases: 0,
    }
}

fn lease(id: &str, agent: &NewAgent) -> creddy_store::NewLease {
    creddy_store::NewLease {
        id: lid(id),
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

fn enrollment(id: &str, name: &str, status: EnrollmentStatus) -> creddy_store::NewEnrollment {
    creddy_store::NewEnrollment {
        id: eid(id),
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

//! Leases: the record of each issued credential.
//!
//! Issuing is intent, mint, commit: [`Store::create_lease`] records `pending` before the
//! plugin is called; [`Store::activate_lease`] commits the result with its audit event, and
//! only then may the credential reach the agent. Revocation works from `due_at` (see the
//! migration `0005_due_index.sql`): [`Store::due_backends`] and [`Store::claim_due_leases`]
//! feed the reaper's per-backend queues; [`Store::queue_revocation`] claims a lease for an
//! explicit revoke; [`Store::forget_lease`] ends an irrevocable one at an admin's request.

use std::collections::{BTreeSet, HashMap, HashSet};

use creddy_core::Timestamp;
use creddy_core::audit::AuditEvent;
use creddy_core::ids::{AgentId, LeaseId};
use creddy_core::lease::LeaseState;

use crate::audit::{append_event, change_with_event};
use crate::group_commit::{Done, Write};
use crate::{Result, Store, decode_strings, in_transaction, with_pool};

/// One lease, as shown to its agent and in agent listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSummary {
    /// `cred_<ULID>`.
    pub id: LeaseId,
    /// The backend that issued it.
    pub backend: String,
    /// The scopes it was issued for.
    pub scopes: Vec<String>,
    /// Its state.
    pub state: LeaseState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl Store {
    /// The agent's leases in `pending` or `active`, soonest expiry first.
    pub async fn open_leases_of(&self, agent: &AgentId) -> Result<Vec<LeaseSummary>> {
        self.leases_of(agent, "('pending', 'active')").await
    }

    async fn leases_of(&self, agent: &AgentId, states: &str) -> Result<Vec<LeaseSummary>> {
        let sql = format!(
            "SELECT id, backend, scopes, state, created_at, expires_at FROM leases \
             WHERE agent_id = $1 AND state IN {states} ORDER BY expires_at"
        );
        let rows: Vec<SummaryRow> = with_pool!(self, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(agent.as_str())
                .fetch_all(p)
                .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(LeaseSummary {
                    scopes: decode_strings("leases.scopes", &r.scopes)?,
                    state: parse_state(&r.state)?,
                    id: LeaseId::from_stored(r.id),
                    backend: r.backend,
                    created_at: Timestamp::from_millis(r.created_at),
                    expires_at: Timestamp::from_millis(r.expires_at),
                })
            })
            .collect()
    }

    /// The number of leases in `pending` or `active`.
    pub async fn count_open_leases(&self) -> Result<i64> {
        let (n,): (i64,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM leases WHERE state IN ('pending', 'active')"
        )
        .fetch_one(p)
        .await)?;
        Ok(n)
    }
}

/// A lease intent: recorded as `pending` before the plugin is called.
#[derive(Debug, Clone)]
pub struct NewLease {
    /// `cred_<ULID>`.
    pub id: LeaseId,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name (kept after the agent is gone).
    pub agent_name: String,
    /// The backend's name.
    pub backend: String,
    /// The authorised requested scopes.
    pub scopes: Vec<String>,
    /// The granted TTL.
    pub ttl_seconds: u64,
    /// When the intent was recorded.
    pub created_at: Timestamp,
    /// When the lease ends.
    pub expires_at: Timestamp,
}

/// What became of a lease intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Recorded as `pending`.
    Recorded,
    /// The agent already holds this many open leases, the most allowed.
    QuotaReached(i64),
    /// The agent no longer exists.
    AgentGone,
    /// The backend is gone or being removed.
    BackendUnavailable,
}

/// A credential's commit: what [`Store::activate_lease`] writes.
#[derive(Debug, Clone)]
pub(crate) struct Activation {
    pub(crate) id: LeaseId,
    pub(crate) sealed_external_id: Option<String>,
    pub(crate) value_sha256: String,
    pub(crate) expires_at: Timestamp,
    pub(crate) event: AuditEvent,
}

/// A failed mint: what [`Store::fail_lease`] writes.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) id: LeaseId,
    pub(crate) error: String,
    pub(crate) event: AuditEvent,
}

/// Records the intents `$intents` (each a lease and its agent's quota of open leases; one
/// agent's in arrival order) inside the transaction `$tx`, each unless its agent is gone,
/// holds its quota (counting the intents recorded before it) or its backend is not active;
/// evaluates to their [`Intent`]s in order. Four statements however many intents: the
/// agents' rows are locked first, in id order (`FOR UPDATE` on PostgreSQL, which serialises
/// one agent's requests on several nodes; SQLite's write lock already covers them), then
/// their open leases are counted, the backends checked, and the recorded intents inserted in
/// one multi-row insert.
macro_rules! record_intents {
    ($tx:ident, $intents:expr) => {{
        let intents: &[(&$crate::NewLease, u32)] = $intents;
        if intents.is_empty() {
            Vec::new()
        } else {
            let mut plan = $crate::leases::IntentPlan::new(intents);
            let mut query =
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(plan.agents_sql($tx.postgres)));
            for agent in &plan.agents {
                query = query.bind(agent.as_str());
            }
            plan.present = query.fetch_all(&mut *$tx).await?.into_iter().collect();
            let mut query =
                sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(plan.open_sql()));
            for agent in &plan.agents {
                query = query.bind(agent.as_str());
            }
            plan.open = query.fetch_all(&mut *$tx).await?.into_iter().collect();
            let mut query =
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(plan.backends_sql()));
            for backend in &plan.backends {
                query = query.bind(backend.as_str());
            }
            plan.active = query.fetch_all(&mut *$tx).await?.into_iter().collect();
            let (outcomes, rows) = plan.decide()?;
            if !rows.is_empty() {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(
                    $crate::leases::insert_leases_sql(rows.len()),
                ));
                for row in rows {
                    query = query
                        .bind(row.lease.id.as_str())
                        .bind(&row.lease.agent_id)
                        .bind(&row.lease.agent_name)
                        .bind(&row.lease.backend)
                        .bind(row.scopes)
                        .bind(row.lease.created_at.as_millis())
                        .bind(row.lease.expires_at.as_millis())
                        .bind(i64::try_from(row.lease.ttl_seconds).unwrap_or(i64::MAX))
                        .bind(
                            row.lease.created_at.as_millis() + $crate::leases::PENDING_GRACE_MILLIS,
                        );
                }
                query.execute(&mut *$tx).await?;
            }
            outcomes
        }
    }};
}
pub(crate) use record_intents;

/// What a batch of intents needs to know, and then decides.
#[derive(Debug)]
pub(crate) struct IntentPlan<'a> {
    intents: &'a [(&'a NewLease, u32)],
    /// The intents' agents, each once, in id order (the lock order).
    pub(crate) agents: Vec<String>,
    /// Their backends, each once.
    pub(crate) backends: Vec<String>,
    /// The agents that exist.
    pub(crate) present: HashSet<String>,
    /// Open leases by agent (absent: none).
    pub(crate) open: HashMap<String, i64>,
    /// The backends that are active.
    pub(crate) active: HashSet<String>,
}

/// A recorded intent's row.
pub(crate) struct LeaseRow<'a> {
    pub(crate) lease: &'a NewLease,
    pub(crate) scopes: String,
}

impl<'a> IntentPlan<'a> {
    pub(crate) fn new(intents: &'a [(&'a NewLease, u32)]) -> Self {
        let distinct = |field: fn(&NewLease) -> &String| {
            let set: BTreeSet<&String> = intents.iter().map(|(lease, _)| field(lease)).collect();
            set.into_iter().cloned().collect::<Vec<String>>()
        };
        Self {
            intents,
            agents: distinct(|lease| &lease.agent_id),
            backends: distinct(|lease| &lease.backend),
            present: HashSet::new(),
            open: HashMap::new(),
            active: HashSet::new(),
        }
    }

    /// Locks and lists the agents that exist.
    pub(crate) fn agents_sql(&self, postgres: bool) -> String {
        format!(
            "SELECT id FROM agents WHERE id IN ({}) ORDER BY id{}",
            crate::placeholders(1, self.agents.len()),
            if postgres { " FOR UPDATE" } else { "" }
        )
    }

    /// Counts the agents' open leases.
    pub(crate) fn open_sql(&self) -> String {
        format!(
            "SELECT agent_id, COUNT(*) FROM leases WHERE agent_id IN ({}) \
             AND state IN ('pending', 'active') GROUP BY agent_id",
            crate::placeholders(1, self.agents.len())
        )
    }

    /// Lists the backends that are active.
    pub(crate) fn backends_sql(&self) -> String {
        format!(
            "SELECT name FROM backends WHERE name IN ({}) AND state = 'active'",
            crate::placeholders(1, self.backends.len())
        )
    }

    /// Each intent's outcome in order, and the rows of those recorded.
    pub(crate) fn decide(mut self) -> Result<(Vec<Intent>, Vec<LeaseRow<'a>>)> {
        let mut outcomes = Vec::with_capacity(self.intents.len());
        let mut rows = Vec::new();
        for (lease, max_open) in self.intents {
            let outcome = if !self.present.contains(&lease.agent_id) {
                Intent::AgentGone
            } else {
                let open = self.open.entry(lease.agent_id.clone()).or_insert(0);
                if *open >= i64::from(*max_open) {
                    Intent::QuotaReached(*open)
                } else if !self.active.contains(&lease.backend) {
                    Intent::BackendUnavailable
                } else {
                    *open += 1;
                    let scopes = serde_json::to_string(&lease.scopes)
                        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
                    rows.push(LeaseRow { lease, scopes });
                    Intent::Recorded
                }
            };
            outcomes.push(outcome);
        }
        Ok((outcomes, rows))
    }
}

/// `INSERT INTO leases … VALUES (…), (…)`: `rows` pending leases.
pub(crate) fn insert_leases_sql(rows: usize) -> String {
    format!(
        "WITH v (id, agent_id, agent_name, backend, scopes, created_at, expires_at, \
         ttl_seconds, due_at) AS (VALUES {}) \
         INSERT INTO leases (id, agent_id, agent_name, backend, scopes, state, created_at, \
         expires_at, ttl_seconds, due_at) SELECT id, agent_id, agent_name, backend, scopes, \
         'pending', created_at, expires_at, ttl_seconds, due_at FROM v",
        crate::value_rows(rows, 9)
    )
}

/// Activates the pending leases of `$activations` inside `$tx`, in one statement (their
/// events are the caller's to append); evaluates to whether each was pending (nothing
/// changes for one that was not). The leases must be distinct.
macro_rules! activate_rows {
    ($tx:ident, $activations:expr) => {{
        let activations: &[&$crate::leases::Activation] = $activations;
        if activations.is_empty() {
            Vec::new()
        } else {
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(
                $crate::leases::activate_sql(activations.len()),
            ));
            for activation in activations {
                query = query
                    .bind(activation.id.as_str())
                    .bind(activation.sealed_external_id.as_deref())
                    .bind(&activation.value_sha256)
                    .bind(activation.expires_at.as_millis());
            }
            let activated: std::collections::HashSet<String> =
                query.fetch_all(&mut *$tx).await?.into_iter().collect();
            activations
                .iter()
                .map(|activation| activated.contains(activation.id.as_str()))
                .collect::<Vec<bool>>()
        }
    }};
}
pub(crate) use activate_rows;

/// Consecutive activations of a batch, applied in one statement when a write that needs the
/// lease rows as they are by then comes (a failed mint, a settlement, another activation of
/// a lease in the run) or the batch ends.
#[derive(Debug, Default)]
pub(crate) struct ActivationRun<'a> {
    /// Where each activation's outcome goes in the batch.
    indices: Vec<usize>,
    pub(crate) activations: Vec<&'a Activation>,
}

impl<'a> ActivationRun<'a> {
    /// Whether the run already activates `activation`'s lease.
    pub(crate) fn holds(&self, activation: &Activation) -> bool {
        self.activations.iter().any(|held| held.id == activation.id)
    }

    /// Adds the activation at `index` of the batch.
    pub(crate) fn push(&mut self, index: usize, activation: &'a Activation) {
        self.indices.push(index);
        self.activations.push(activation);
    }

    /// Writes the run's outcomes (`activated`, in its order) into `done` and empties it.
    pub(crate) fn settle(&mut self, activated: Vec<bool>, done: &mut [Option<Done>]) {
        for (index, activated) in self.indices.drain(..).zip(activated) {
            if let Some(slot) = done.get_mut(index) {
                *slot = Some(Done::Activated(activated));
            }
        }
        self.activations.clear();
    }
}

/// Activates `rows` pending leases and returns the ids of those that were pending.
pub(crate) fn activate_sql(rows: usize) -> String {
    format!(
        "WITH v (lease, sealed, sha, ends) AS (VALUES {}) \
         UPDATE leases SET state = 'active', external_id = v.sealed, value_sha256 = v.sha, \
         expires_at = v.ends, due_at = v.ends FROM v WHERE leases.id = v.lease \
         AND leases.state = 'pending' RETURNING id",
        crate::value_rows(rows, 4)
    )
}

/// A lease's end: what [`Store::settle_lease`] writes.
#[derive(Debug, Clone)]
pub(crate) struct Settlement {
    pub(crate) id: LeaseId,
    pub(crate) to_state: LeaseState,
    pub(crate) now: Timestamp,
    pub(crate) event: AuditEvent,
}

/// Settles the lease of `$settlement` inside `$tx` (its event is the caller's to append),
/// unless it has already ended; evaluates to whether it changed.
macro_rules! settle_row {
    ($tx:ident, $settlement:expr) => {{
        let settlement: &$crate::leases::Settlement = $settlement;
        sqlx::query(
            "UPDATE leases SET state = $2, next_attempt_at = NULL, due_at = NULL, \
             revoked_at = CASE WHEN $2 = 'revoked' THEN $3 ELSE revoked_at END \
             WHERE id = $1 AND state IN ('pending', 'active', 'revoking', 'irrevocable')",
        )
        .bind(settlement.id.as_str())
        .bind(settlement.to_state.as_str())
        .bind(settlement.now.as_millis())
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            > 0
    }};
}
pub(crate) use settle_row;

/// Marks the pending lease of `$failure` `failed` inside `$tx` (its event, recorded either
/// way, is the caller's to append).
macro_rules! fail_row {
    ($tx:ident, $failure:expr) => {{
        let failure: &$crate::leases::Failure = $failure;
        sqlx::query(
            "UPDATE leases SET state = 'failed', last_error = $2, due_at = NULL WHERE id = $1 AND state = 'pending'",
        )
        .bind(failure.id.as_str())
        .bind(&failure.error)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use fail_row;

impl Store {
    /// Records a lease intent in state `pending`, unless the agent already holds
    /// `max_open` leases in `pending` or `active`, is gone, or the backend is gone or being
    /// removed (`draining`); nothing is recorded then. Nothing is issued yet, so there is
    /// nothing to audit: `credential.issued` or `credential.failed` follows when the attempt
    /// ends.
    ///
    /// The quota is part of the insert: the agent's row is locked first (a no-op update,
    /// which PostgreSQL serialises and SQLite's write lock already covers), so concurrent
    /// requests of one agent count each other's intents.
    pub async fn create_lease(&self, lease: &NewLease, max_open: u32) -> Result<Intent> {
        let write = Write::Intent {
            lease: lease.clone(),
            max_open,
        };
        match self.write(write).await? {
            Done::Intent(intent) => Ok(intent),
            other => Err(other.unexpected()),
        }
    }

    /// Commits an issued credential: the pending lease becomes `active` with its sealed
    /// revocation handle, the SHA-256 of the value and its final expiry, together with the
    /// `credential.issued` event. Fails when the lease is no longer pending.
    pub async fn activate_lease(
        &self,
        id: &LeaseId,
        sealed_external_id: Option<&str>,
        value_sha256: &str,
        expires_at: Timestamp,
        event: &AuditEvent,
    ) -> Result<()> {
        let activation = Activation {
            id: id.clone(),
            sealed_external_id: sealed_external_id.map(str::to_owned),
            value_sha256: value_sha256.to_owned(),
            expires_at,
            event: event.clone(),
        };
        let activated = match self.write(Write::Activate(activation)).await? {
            Done::Activated(activated) => activated,
            other => return Err(other.unexpected()),
        };
        if activated {
            Ok(())
        } else {
            Err(crate::StoreError::Corrupt(format!(
                "lease {id} is no longer pending"
            )))
        }
    }

    /// Marks a pending lease `failed` (the mint produced no credential) with the
    /// `credential.failed` event.
    pub async fn fail_lease(&self, id: &LeaseId, error: &str, event: &AuditEvent) -> Result<()> {
        let failure = Failure {
            id: id.clone(),
            error: error.to_owned(),
            event: event.clone(),
        };
        match self.write(Write::Fail(failure)).await? {
            Done::Failed => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    /// The number of the agent's leases in `pending` or `active` (for the lease quota).
    pub async fn count_open_leases_of(&self, agent: &AgentId) -> Result<i64> {
        let (n,): (i64,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM leases WHERE agent_id = $1 AND state IN ('pending', 'active')"
        )
        .bind(agent.as_str())
        .fetch_one(p)
        .await)?;
        Ok(n)
    }

    /// The state of a lease.
    pub async fn lease_state(&self, id: &LeaseId) -> Result<Option<LeaseState>> {
        let row: Option<(String,)> = with_pool!(self, |p| sqlx::query_as(
            "SELECT state FROM leases WHERE id = $1"
        )
        .bind(id.as_str())
        .fetch_optional(p)
        .await)?;
        row.map(|r| parse_state(&r.0)).transpose()
    }
}

/// An open lease with what revoking it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocableLease {
    /// The backend's name.
    pub backend: String,
    /// `cred_…`.
    pub id: LeaseId,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// The sealed revocation handle, if the mint got that far.
    pub sealed_external_id: Option<String>,
    /// `pending` (an intent whose outcome is unknown), `active`, `revoking` or `irrevocable`.
    pub state: LeaseState,
    /// Failed revocation attempts so far.
    pub attempts: i64,
    /// When the first attempt failed (the retry horizon counts from here).
    pub first_failed_at: Option<Timestamp>,
    /// When the lease expires.
    pub expires_at: Timestamp,
}

/// How long a lease may stay `pending` before it is reconciled (a mint takes at most a
/// minute; the rest is margin for a crash in between).
pub const PENDING_GRACE_MILLIS: i64 = 120_000;

/// The stored columns of a [`RevocableLease`].
#[derive(sqlx::FromRow)]
struct RevocableRow {
    id: String,
    agent_id: String,
    agent_name: String,
    external_id: Option<String>,
    backend: String,
    state: String,
    attempts: i64,
    first_failed_at: Option<i64>,
    expires_at: i64,
}

/// The columns of a [`RevocableRow`].
const REVOCABLE_COLUMNS: &str =
    "id, agent_id, agent_name, external_id, backend, state, attempts, first_failed_at, expires_at";

fn revocable(r: RevocableRow) -> Result<RevocableLease> {
    Ok(RevocableLease {
        state: parse_state(&r.state)?,
        id: LeaseId::from_stored(r.id),
        agent_id: r.agent_id,
        agent_name: r.agent_name,
        sealed_external_id: r.external_id,
        backend: r.backend,
        attempts: r.attempts,
        first_failed_at: r.first_failed_at.map(Timestamp::from_millis),
        expires_at: Timestamp::from_millis(r.expires_at),
    })
}

/// A stored state, parsed once here; anything else is a damaged row.
fn parse_state(text: &str) -> Result<LeaseState> {
    crate::parse_name("leases.state", text)
}

impl Store {
    /// The leases of a backend that still hold (or may hold) a live credential: `pending`,
    /// `active`, `revoking` and `irrevocable`.
    pub async fn revocable_leases_of_backend(&self, backend: &str) -> Result<Vec<RevocableLease>> {
        let sql = format!(
            "SELECT {REVOCABLE_COLUMNS} FROM leases WHERE backend = $1 \
             AND state IN ('pending', 'active', 'revoking', 'irrevocable') ORDER BY id"
        );
        let rows: Vec<RevocableRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(backend)
                .fetch_all(p)
                .await)?;
        rows.into_iter().map(revocable).collect()
    }

    /// The configured backends that have leases due at `now` and not claimed by a node.
    /// One index probe per backend: a `DISTINCT` over the due leases would make SQLite walk
    /// the whole index.
    pub async fn due_backends(&self, now: Timestamp) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = with_pool!(self, |p| sqlx::query_as(
            "SELECT b.name FROM backends b WHERE EXISTS \
             (SELECT 1 FROM leases l WHERE l.backend = b.name AND l.due_at <= $1) ORDER BY b.name"
        )
        .bind(now.as_millis())
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Claims, for `claim_millis`, up to `limit` of `backend`'s leases that are due at `now`
    /// and that no other node holds, oldest due first: `active` ones past their expiry, every
    /// queued `revoking` one, `pending` ones older than [`PENDING_GRACE_MILLIS`] (a crash or
    /// timeout left their outcome unknown), failing ones at their next attempt and
    /// `irrevocable` ones at their daily retry. A claim moves the lease's due time to the end
    /// of the claim, so several nodes sharing a database get disjoint leases and the claim of
    /// a node that died lapses on its own.
    pub async fn claim_due_leases(
        &self,
        now: Timestamp,
        claim_millis: i64,
        backend: &str,
        limit: i64,
    ) -> Result<Vec<RevocableLease>> {
        // The due condition is repeated in the outer WHERE so that PostgreSQL re-checks it
        // on the newest row version when two nodes race for the same rows.
        let sql = format!(
            "UPDATE leases SET due_at = $3 WHERE id IN (SELECT id FROM leases \
             WHERE backend = $4 AND due_at <= $1 ORDER BY due_at LIMIT $2) \
             AND due_at <= $1 RETURNING {REVOCABLE_COLUMNS}"
        );
        let mut rows: Vec<RevocableRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now.as_millis())
                .bind(limit)
                .bind(now.as_millis() + claim_millis)
                .bind(backend)
                .fetch_all(p)
                .await)?;
        // RETURNING does not keep the subquery's order.
        rows.sort_by_key(|r| r.expires_at);
        rows.into_iter().map(revocable).collect()
    }

    /// When the next lease falls due (claimed ones at the end of their claim).
    pub async fn next_lease_due(&self) -> Result<Option<Timestamp>> {
        let (next,): (Option<i64>,) = with_pool!(self, |p| {
            sqlx::query_as("SELECT MIN(due_at) FROM leases WHERE due_at IS NOT NULL")
                .fetch_one(p)
                .await
        })?;
        Ok(next.map(Timestamp::from_millis))
    }

    /// Ends a lease that still holds a live credential in `to_state` (`revoked` or
    /// `irrevocable`), with its event; false when the lease had already ended.
    pub async fn settle_lease(
        &self,
        id: &LeaseId,
        to_state: LeaseState,
        now: Timestamp,
        event: &AuditEvent,
    ) -> Result<bool> {
        let settlement = Settlement {
            id: id.clone(),
            to_state,
            now,
            event: event.clone(),
        };
        match self.write(Write::Settle(settlement)).await? {
            Done::Settled(settled) => Ok(settled),
            other => Err(other.unexpected()),
        }
    }

    /// The agent's leases in `pending`, `active` or `revoking`, soonest expiry first.
    pub async fn live_leases_of(&self, agent: &AgentId) -> Result<Vec<LeaseSummary>> {
        self.leases_of(agent, "('pending', 'active', 'revoking')")
            .await
    }
}

/// A lease as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `cred_…`.
    pub id: LeaseId,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// The backend.
    pub backend: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The state.
    pub state: LeaseState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Revocation attempts so far.
    pub attempts: i64,
    /// The last error.
    pub last_error: Option<String>,
}

/// The stored columns of a [`LeaseRecord`].
#[derive(sqlx::FromRow)]
struct LeaseRecordRow {
    id: String,
    agent_id: String,
    agent_name: String,
    backend: String,
    scopes: String,
    state: String,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    attempts: i64,
    last_error: Option<String>,
}

/// The stored columns of a [`LeaseSummary`].
#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: String,
    backend: String,
    scopes: String,
    state: String,
    created_at: i64,
    expires_at: i64,
}

/// Filters for [`Store::find_leases`].
#[derive(Debug, Clone, Default)]
pub struct LeaseFilter {
    /// Only this lease.
    pub id: Option<LeaseId>,
    /// Only this agent's (by name).
    pub agent_name: Option<String>,
    /// Only this backend's.
    pub backend: Option<String>,
    /// Only these states (default: pending, active, revoking, irrevocable).
    pub states: Vec<LeaseState>,
    /// Only leases older than this one (its id): the cursor of the next page.
    pub before: Option<String>,
    /// At most this many (1 to [`MAX_LEASE_PAGE`]; 0 means the most).
    pub limit: u32,
}

/// The most leases one page lists.
pub const MAX_LEASE_PAGE: u32 = 1000;

impl Store {
    /// Leases matching `filter`, newest first (by id, whose ULID starts with the creation
    /// time), one page of at most `filter.limit`; the last id is the cursor of the next page.
    pub async fn find_leases(&self, filter: &LeaseFilter) -> Result<Vec<LeaseRecord>> {
        let wanted: &[LeaseState] = if filter.states.is_empty() {
            &LeaseState::OPEN
        } else {
            &filter.states
        };
        // Only the names of lease states reach the SQL text; every given filter becomes a condition
        // of its own (never `$n IS NULL OR …`), so the id lookup uses the primary key and the
        // others their indexes however many leases there are.
        let states = wanted
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut conditions = vec![format!("state IN ({states})")];
        let mut values: Vec<&str> = Vec::new();
        for (column, value) in [
            ("id", filter.id.as_ref().map(LeaseId::as_str)),
            ("agent_name", filter.agent_name.as_deref()),
            ("backend", filter.backend.as_deref()),
            ("before", filter.before.as_deref()),
        ] {
            if let Some(value) = value {
                values.push(value);
                let operator = if column == "before" { "id <" } else { "=" };
                let column = if column == "before" { "" } else { column };
                conditions.push(format!("{column} {operator} ${}", values.len()));
            }
        }
        let limit = match filter.limit {
            0 => MAX_LEASE_PAGE,
            n => n.min(MAX_LEASE_PAGE),
        };
        let sql = format!(
            "SELECT id, agent_id, agent_name, backend, scopes, state, created_at, expires_at, revoked_at, attempts, last_error \
             FROM leases WHERE {} ORDER BY id DESC LIMIT {limit}",
            conditions.join(" AND ")
        );
        let rows: Vec<LeaseRecordRow> = with_pool!(self, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for value in &values {
                query = query.bind(*value);
            }
            query.fetch_all(p).await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(LeaseRecord {
                    scopes: decode_strings("leases.scopes", &r.scopes)?,
                    state: parse_state(&r.state)?,
                    id: LeaseId::from_stored(r.id),
                    agent_id: r.agent_id,
                    agent_name: r.agent_name,
                    backend: r.backend,
                    created_at: Timestamp::from_millis(r.created_at),
                    expires_at: Timestamp::from_millis(r.expires_at),
                    revoked_at: r.revoked_at.map(Timestamp::from_millis),
                    attempts: r.attempts,
                    last_error: r.last_error,
                })
            })
            .collect()
    }

    /// Makes an `irrevocable` lease due now, so the reaper tries it again at once instead
    /// of at its daily retry. False when the lease is not irrevocable.
    pub async fn retry_irrevocable_now(&self, id: &LeaseId, now: Timestamp) -> Result<bool> {
        let retried = with_pool!(self, |p| {
            sqlx::query(
            "UPDATE leases SET due_at = $2, next_attempt_at = $2 WHERE id = $1 AND state = 'irrevocable'"
        )
        .bind(id.as_str())
        .bind(now.as_millis())
        .execute(p)
        .await
        .map(|r| r.rows_affected() == 1)
        })?;
        Ok(retried)
    }

    /// Queues a lease for revocation (an explicit revoke). An `active` lease becomes
    /// `revoking` and is claimed by the caller for `claim_millis`, who should try at once
    /// ([`Queued::Claimed`]); a `pending` one (its mint still running) becomes `revoking` and
    /// is reconciled when its grace ends. Any other lease is left as it is.
    pub async fn queue_revocation(
        &self,
        id: &LeaseId,
        now: Timestamp,
        claim_millis: i64,
    ) -> Result<Queued> {
        let sql = format!(
            "UPDATE leases SET state = 'revoking', due_at = $3 WHERE id = $1 AND state = 'active' \
             AND (expires_at > $2 OR due_at <= $2) RETURNING {REVOCABLE_COLUMNS}"
        );
        let claimed: Option<RevocableRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id.as_str())
                .bind(now.as_millis())
                .bind(now.as_millis() + claim_millis)
                .fetch_optional(p)
                .await)?;
        if let Some(row) = claimed {
            return Ok(Queued::Claimed(revocable(row)?));
        }
        with_pool!(self, |p| sqlx::query(
            "UPDATE leases SET state = 'revoking' WHERE id = $1 AND state = 'pending'"
        )
        .bind(id.as_str())
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(match self.lease_state(id).await? {
            Some(state) => Queued::State(state),
            None => Queued::Missing,
        })
    }

    /// Stops retrying an `irrevocable` lease: it becomes `forgotten` (final) with its event,
    /// in one transaction. False when the lease is not irrevocable.
    pub async fn forget_lease(
        &self,
        id: &LeaseId,
        reason: &str,
        event: &AuditEvent,
    ) -> Result<bool> {
        let forgotten = in_transaction!(self, |tx| change_with_event!(
            tx,
            sqlx::query(
                "UPDATE leases SET state = 'forgotten', due_at = NULL, next_attempt_at = NULL, \
                 last_error = $2 WHERE id = $1 AND state = 'irrevocable'",
            )
            .bind(id.as_str())
            .bind(reason),
            event
        ));
        Ok(forgotten)
    }

    /// The number of leases per backend and state, for the states that still need work or
    /// attention (`pending`, `active`, `revoking`, `irrevocable`).
    pub async fn count_open_leases_by_backend(&self) -> Result<Vec<(String, LeaseState, i64)>> {
        // Counting every state walks the (backend, state) index once; a filter on the state
        // would make SQLite check each entry and take twice as long.
        let counts: Vec<(String, String, i64)> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT backend, state, COUNT(*) FROM leases GROUP BY backend, state ORDER BY backend, state"
        )
        .fetch_all(p)
        .await
        })?;
        let mut open = Vec::new();
        for (backend, state, count) in counts {
            let state = parse_state(&state)?;
            if state.is_open() {
                open.push((backend, state, count));
            }
        }
        Ok(open)
    }
}

/// The outcome of [`Store::queue_revocation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// No such lease.
    Missing,
    /// The lease is now `revoking` and claimed by the caller.
    Claimed(RevocableLease),
    /// The lease's state; nothing for the caller to do.
    State(LeaseState),
}

impl Store {
    /// One lease with what revoking it needs.
    pub async fn revocable_lease(&self, id: &LeaseId) -> Result<Option<RevocableLease>> {
        let sql = format!("SELECT {REVOCABLE_COLUMNS} FROM leases WHERE id = $1");
        let row: Option<RevocableRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id.as_str())
                .fetch_optional(p)
                .await)?;
        row.map(revocable).transpose()
    }
}

impl Store {
    /// Records a failed revocation attempt with its `credential.revoke_failed` event and
    /// schedules the next one; an `active` lease is `revoking` from its first failed attempt
    /// (§12.1). With `give_up`, the lease moves to that state instead
    /// (`irrevocable`, retried from `next_attempt_at`, or `lapsed`, final).
    pub async fn record_revoke_failure(
        &self,
        id: &LeaseId,
        now: Timestamp,
        error: &str,
        next_attempt_at: Option<Timestamp>,
        give_up: Option<LeaseState>,
        event: &AuditEvent,
    ) -> Result<()> {
        in_transaction!(self, |tx| {
            sqlx::query(
                "UPDATE leases SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, due_at = $3, \
                 first_failed_at = COALESCE(first_failed_at, $4), \
                 state = COALESCE($5, CASE WHEN state = 'active' THEN 'revoking' ELSE state END) \
                 WHERE id = $1 AND state IN ('pending', 'active', 'revoking', 'irrevocable')",
            )
            .bind(id.as_str())
            .bind(error)
            .bind(next_attempt_at.map(Timestamp::as_millis))
            .bind(now.as_millis())
            .bind(give_up.map(LeaseState::as_str))
            .execute(&mut *tx)
            .await?;
            append_event!(tx, event)?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str, agent: &str, backend: &str) -> NewLease {
        NewLease {
            id: LeaseId::from_stored(id.to_owned()),
            agent_id: agent.to_owned(),
            agent_name: agent.to_owned(),
            backend: backend.to_owned(),
            scopes: vec![backend.to_owned()],
            ttl_seconds: 60,
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(60_000),
        }
    }

    #[test]
    fn a_batch_of_intents_counts_the_ones_recorded_before_each() {
        let leases = [
            intent("cred_1", "ag_a", "alpha"),
            intent("cred_2", "ag_a", "alpha"),
            intent("cred_3", "ag_a", "alpha"),
            intent("cred_4", "ag_b", "alpha"),
            intent("cred_5", "ag_c", "alpha"),
            intent("cred_6", "ag_b", "gone"),
        ];
        let intents: Vec<(&NewLease, u32)> = leases.iter().map(|lease| (lease, 3)).collect();
        let mut plan = IntentPlan::new(&intents);
        assert_eq!(
            plan.agents,
            ["ag_a", "ag_b", "ag_c"],
            "each once, in lock order"
        );
        assert_eq!(plan.backends, ["alpha", "gone"]);
        assert!(plan.agents_sql(true).ends_with("ORDER BY id FOR UPDATE"));
        assert!(plan.agents_sql(false).ends_with("ORDER BY id"));
        plan.present = ["ag_a", "ag_b"].map(str::to_owned).into();
        plan.open = [("ag_a".to_owned(), 1)].into();
        plan.active = ["alpha".to_owned()].into();
        let (outcomes, rows) = plan.decide().expect("decided");
        assert_eq!(
            outcomes,
            [
                Intent::Recorded,
                Intent::Recorded,
                Intent::QuotaReached(3),
                Intent::Recorded,
                Intent::AgentGone,
                Intent::BackendUnavailable,
            ]
        );
        let recorded: Vec<&str> = rows.iter().map(|row| row.lease.id.as_str()).collect();
        assert_eq!(recorded, ["cred_1", "cred_2", "cred_4"]);
        assert_eq!(rows[0].scopes, r#"["alpha"]"#);
    }

    #[test]
    fn multi_row_statements_number_their_parameters_in_rows() {
        assert!(insert_leases_sql(2).contains(
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9), ($10, $11, $12, $13, $14, $15, $16, $17, $18))"
        ));
        assert!(
            activate_sql(3)
                .contains("VALUES ($1, $2, $3, $4), ($5, $6, $7, $8), ($9, $10, $11, $12))")
        );
    }
}

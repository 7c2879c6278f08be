//! Leases: the record of each issued credential.
//!
//! Issuing is intent, mint, commit: [`Store::create_lease`] records `pending` before the
//! plugin is called; [`Store::activate_lease`] commits the result with its audit event, and
//! only then may the credential reach the agent. Revocation works from `due_at` (see the
//! migration `0005_due_index.sql`): [`Store::due_backends`] and [`Store::claim_due_leases`]
//! feed the reaper's per-backend queues; [`Store::queue_revocation`] claims a lease for an
//! explicit revoke; [`Store::forget_lease`] ends an irrevocable one at an admin's request.

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

/// Records the intent `$lease` inside the transaction `$tx` unless the agent is gone, holds
/// `$max_open` open leases, or the backend is not active; evaluates to the [`Intent`]. The
/// agent's row is locked first (a no-op update, which PostgreSQL serialises and SQLite's write
/// lock already covers), so concurrent requests of one agent count each other's intents.
macro_rules! record_intent {
    ($tx:ident, $lease:expr, $max_open:expr) => {{
        let lease: &$crate::NewLease = $lease;
        let max_open: u32 = $max_open;
        let scopes = serde_json::to_string(&lease.scopes)
            .map_err(|e| $crate::StoreError::Corrupt(e.to_string()))?;
        let ttl = i64::try_from(lease.ttl_seconds).unwrap_or(i64::MAX);
        let agent = sqlx::query("UPDATE agents SET id = id WHERE id = $1")
            .bind(&lease.agent_id)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        if agent == 0 {
            $crate::Intent::AgentGone
        } else {
            let (open,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM leases WHERE agent_id = $1 AND state IN ('pending', 'active')",
            )
            .bind(&lease.agent_id)
            .fetch_one(&mut *$tx)
            .await?;
            if open >= i64::from(max_open) {
                $crate::Intent::QuotaReached(open)
            } else {
                let inserted = sqlx::query(
                    "INSERT INTO leases (id, agent_id, agent_name, backend, scopes, state, created_at, expires_at, ttl_seconds, due_at) \
                     SELECT $1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9 \
                     WHERE EXISTS (SELECT 1 FROM backends WHERE name = $4 AND state = 'active')",
                )
                .bind(lease.id.as_str())
                .bind(&lease.agent_id)
                .bind(&lease.agent_name)
                .bind(&lease.backend)
                .bind(&scopes)
                .bind(lease.created_at.as_millis())
                .bind(lease.expires_at.as_millis())
                .bind(ttl)
                .bind(lease.created_at.as_millis() + $crate::leases::PENDING_GRACE_MILLIS)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    $crate::Intent::Recorded
                } else {
                    $crate::Intent::BackendUnavailable
                }
            }
        }
    }};
}
pub(crate) use record_intent;

/// Activates the pending lease of `$activation` inside `$tx` (its event is the caller's to
/// append); evaluates to whether it was pending (nothing changes when it was not).
macro_rules! activate_row {
    ($tx:ident, $activation:expr) => {{
        let activation: &$crate::leases::Activation = $activation;
        sqlx::query(
            "UPDATE leases SET state = 'active', external_id = $2, value_sha256 = $3, expires_at = $4, due_at = $4 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(activation.id.as_str())
        .bind(activation.sealed_external_id.as_deref())
        .bind(&activation.value_sha256)
        .bind(activation.expires_at.as_millis())
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1
    }};
}
pub(crate) use activate_row;

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

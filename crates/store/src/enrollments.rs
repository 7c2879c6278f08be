//! Enrollments and amendments: requests waiting for a person or a policy (§7).
//!
//! An enrollment is `pending` until decided, then `approved` (the agent exists, its
//! credentials not yet picked up), `claimed` (picked up once), `rejected` or `expired`. The
//! poll secret is stored as a hash; the agent's vend token and client secret are generated at
//! pickup and only their hashes stored, so no usable credential ever rests in storage. Every
//! transition writes its audit events in the same transaction.

use creddy_core::Timestamp;
use creddy_core::agent::NewAgent;
use creddy_core::audit::AuditEvent;
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::ids::{AgentId, EnrollmentId};
use creddy_core::secret::TokenHash;

use crate::agents::insert_agent;
use crate::audit::{append_event, append_events};
use crate::{Result, Store, StoreError, decode_strings, in_transaction, parse_name, with_pool};

/// An enrollment or amendment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// `enr_…`.
    pub id: EnrollmentId,
    /// `enroll` or `amendment`.
    pub kind: EnrollmentKind,
    /// The (requested) agent name.
    pub name: String,
    /// The agent: an amendment's, or an approved enrollment's.
    pub agent_id: Option<String>,
    /// The scopes: requested, then as approved.
    pub scopes: Vec<String>,
    /// `pending`, `approved`, `claimed`, `rejected` or `expired`.
    pub status: EnrollmentStatus,
    /// The governing policy.
    pub policy: Option<String>,
    /// Why it waits or was rejected.
    pub reason: Option<String>,
    /// The requesting address.
    pub ip: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
    /// Its deadline: the decision's while pending, the pickup's once approved.
    pub expires_at: Timestamp,
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    /// `enr_…`.
    pub id: EnrollmentId,
    /// `enroll` or `amendment`.
    pub kind: EnrollmentKind,
    /// The agent name.
    pub name: String,
    /// The amendment's agent.
    pub agent_id: Option<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// `pending`, `rejected` or `claimed` (approved and picked up at once).
    pub status: EnrollmentStatus,
    /// The governing policy.
    pub policy: Option<String>,
    /// The policy's reason.
    pub reason: Option<String>,
    /// The requesting address.
    pub ip: Option<String>,
    /// Hash of the poll secret (enrollments left pending).
    pub secret_hash: Option<TokenHash>,
    /// Now.
    pub created_at: Timestamp,
    /// The decision deadline.
    pub expires_at: Timestamp,
    /// Who decided at once: `policy` or `local_admin`.
    pub decided_by: Option<&'static str>,
}

/// The stored columns of an [`Enrollment`] ([`COLUMNS`]).
#[derive(sqlx::FromRow)]
struct EnrollmentRow {
    id: String,
    kind: String,
    name: String,
    agent_id: Option<String>,
    scopes: String,
    status: String,
    policy: Option<String>,
    reason: Option<String>,
    ip: Option<String>,
    created_at: i64,
    expires_at: i64,
}

const COLUMNS: &str =
    "id, kind, name, agent_id, scopes, status, policy, reason, ip, created_at, expires_at";

fn from_row(r: EnrollmentRow) -> Result<Enrollment> {
    Ok(Enrollment {
        scopes: decode_strings("enrollments.scopes", &r.scopes)?,
        kind: parse_name("enrollments.kind", &r.kind)?,
        status: parse_name("enrollments.status", &r.status)?,
        id: EnrollmentId::from_stored(r.id),
        name: r.name,
        agent_id: r.agent_id,
        policy: r.policy,
        reason: r.reason,
        ip: r.ip,
        created_at: Timestamp::from_millis(r.created_at),
        expires_at: Timestamp::from_millis(r.expires_at),
    })
}

fn encode(scopes: &[String]) -> Result<String> {
    serde_json::to_string(scopes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Records a request with its events. An `enroll` needs a name free among agents and
    /// open enrollments ([`StoreError::NameTaken`]). A `pending` request needs room under
    /// `max_open` ([`StoreError::Conflict`]): an enrollment counts the open enrollments, an
    /// amendment the open amendments of its agent (so one agent's amendments never block
    /// enrollments). With `agent` (approved at once) the agent is created in the same
    /// transaction.
    pub async fn request_enrollment(
        &self,
        new: &NewEnrollment,
        agent: Option<&NewAgent>,
        max_open: u32,
        events: &[AuditEvent],
    ) -> Result<()> {
        let scopes = encode(&new.scopes)?;
        let name_key = new.name.to_ascii_lowercase();
        in_transaction!(self, |tx| {
            if new.kind == EnrollmentKind::Enroll {
                let (taken,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM agents WHERE name_key = $1")
                        .bind(&name_key)
                        .fetch_one(&mut *tx)
                        .await?;
                if taken > 0 {
                    return Err(StoreError::NameTaken);
                }
            } else {
                // Lock the agent's row so that concurrent amendments count each other, and
                // refuse one for an agent that is gone.
                let exists = sqlx::query("UPDATE agents SET id = id WHERE id = $1")
                    .bind(new.agent_id.as_deref())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if exists == 0 {
                    return Err(StoreError::Conflict("the agent no longer exists".into()));
                }
            }
            if new.status == EnrollmentStatus::Pending {
                let (open,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM enrollments WHERE status = 'pending' AND kind = $1 \
                     AND ($1 = 'enroll' OR agent_id = $2)",
                )
                .bind(new.kind.as_str())
                .bind(new.agent_id.as_deref())
                .fetch_one(&mut *tx)
                .await?;
                if open >= i64::from(max_open) {
                    return Err(StoreError::Conflict(
                        if new.kind == EnrollmentKind::Enroll {
                            format!(
                                "{open} enrollments are waiting for a decision, the most allowed"
                            )
                        } else {
                            format!(
                                "this agent already has {open} scope requests waiting, the most allowed"
                            )
                        },
                    ));
                }
            }
            sqlx::query(
                "INSERT INTO enrollments (id, kind, name, name_key, agent_id, scopes, status, policy, \
                 reason, ip, secret_hash, created_at, expires_at, decided_at, decided_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(new.id.as_str())
            .bind(new.kind.as_str())
            .bind(&new.name)
            .bind(&name_key)
            .bind(agent.map(|a| a.id.as_str()).or(new.agent_id.as_deref()))
            .bind(&scopes)
            .bind(new.status.as_str())
            .bind(new.policy.as_deref())
            .bind(new.reason.as_deref())
            .bind(new.ip.as_deref())
            .bind(new.secret_hash.as_ref().map(TokenHash::as_str))
            .bind(new.created_at.as_millis())
            .bind(new.expires_at.as_millis())
            .bind(new.decided_by.map(|_| new.created_at.as_millis()))
            .bind(new.decided_by)
            .execute(&mut *tx)
            .await?;
            if let Some(agent) = agent {
                insert_agent!(tx, agent)?;
            }
            append_events!(tx, events);
        });
        Ok(())
    }

    /// The request with that id.
    pub async fn find_enrollment(&self, id: &EnrollmentId) -> Result<Option<Enrollment>> {
        self.enrollment_where("id = $1", id.as_str()).await
    }

    /// The enrollment whose poll secret has this hash.
    pub async fn find_enrollment_by_secret(&self, hash: &TokenHash) -> Result<Option<Enrollment>> {
        self.enrollment_where("secret_hash = $1", hash.as_str())
            .await
    }

    async fn enrollment_where(&self, condition: &str, value: &str) -> Result<Option<Enrollment>> {
        let sql = format!("SELECT {COLUMNS} FROM enrollments WHERE {condition}");
        let row: Option<EnrollmentRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(value)
                .fetch_optional(p)
                .await)?;
        row.map(from_row).transpose()
    }

    /// Requests waiting for a decision, oldest first (at most 1000).
    pub async fn pending_enrollments(&self) -> Result<Vec<Enrollment>> {
        self.enrollments_where("status = 'pending'", None).await
    }

    /// The agent's amendments waiting for a decision.
    pub async fn pending_amendments_of(&self, agent: &AgentId) -> Result<Vec<Enrollment>> {
        self.enrollments_where(
            "status = 'pending' AND kind = 'amendment' AND agent_id = $1",
            Some(agent.as_str()),
        )
        .await
    }

    /// Requests whose deadline has passed while `pending` or `approved`, oldest first.
    pub async fn lapsed_enrollments(&self, now: Timestamp, limit: i64) -> Result<Vec<Enrollment>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM enrollments WHERE status IN ('pending', 'approved') \
             AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        );
        let rows: Vec<EnrollmentRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now.as_millis())
                .bind(limit)
                .fetch_all(p)
                .await)?;
        rows.into_iter().map(from_row).collect()
    }

    async fn enrollments_where(
        &self,
        condition: &str,
        value: Option<&str>,
    ) -> Result<Vec<Enrollment>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM enrollments WHERE {condition} ORDER BY created_at LIMIT 1000"
        );
        let rows: Vec<EnrollmentRow> = with_pool!(self, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            if let Some(value) = value {
                query = query.bind(value);
            }
            query.fetch_all(p).await
        })?;
        rows.into_iter().map(from_row).collect()
    }

    /// Approves a pending enrollment: the agent is created (its credentials wait for
    /// pickup until `pickup_by`), with the events. [`StoreError::Conflict`] when the request
    /// was already decided.
    pub async fn approve_enrollment(
        &self,
        id: &EnrollmentId,
        agent: &NewAgent,
        decided_by: &str,
        pickup_by: Timestamp,
        events: &[AuditEvent],
    ) -> Result<()> {
        let scopes = encode(&agent.scopes.to_strings())?;
        in_transaction!(self, |tx| {
            let decided = sqlx::query(
                "UPDATE enrollments SET status = 'approved', agent_id = $2, scopes = $3, \
                 decided_at = $4, decided_by = $5, expires_at = $6, policy = COALESCE($7, policy) \
                 WHERE id = $1 AND kind = 'enroll' AND status = 'pending'",
            )
            .bind(id.as_str())
            .bind(agent.id.as_str())
            .bind(&scopes)
            .bind(agent.created_at.as_millis())
            .bind(decided_by)
            .bind(pickup_by.as_millis())
            .bind(agent.policy.as_deref())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if decided == 0 {
                return Err(StoreError::Conflict(format!(
                    "request {id} was already decided"
                )));
            }
            insert_agent!(tx, agent)?;
            append_events!(tx, events);
        });
        Ok(())
    }

    /// Approves a pending amendment: `added` is merged into the agent's scopes as they are
    /// stored when the transaction runs (sorted, without duplicates), so two approvals at
    /// once both keep their scopes, and a caller holding a narrowed view of the agent (an
    /// access token) cannot wipe grants it does not see. The events are built from the
    /// merged set and appended in the same transaction; the merged set is returned.
    pub async fn approve_amendment(
        &self,
        id: &EnrollmentId,
        agent: &AgentId,
        added: &[String],
        decided_by: &str,
        now: Timestamp,
        events: impl FnOnce(&[String]) -> Vec<AuditEvent>,
    ) -> Result<Vec<String>> {
        let added_text = encode(added)?;
        let merged = in_transaction!(self, |tx| {
            let decided = sqlx::query(
                "UPDATE enrollments SET status = 'approved', scopes = $2, decided_at = $3, decided_by = $4 \
                 WHERE id = $1 AND kind = 'amendment' AND status = 'pending' AND agent_id = $5",
            )
            .bind(id.as_str())
            .bind(&added_text)
            .bind(now.as_millis())
            .bind(decided_by)
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if decided == 0 {
                return Err(StoreError::Conflict(format!(
                    "request {id} was already decided"
                )));
            }
            // A no-op update takes the row lock (PostgreSQL) before the scopes are read, so a
            // concurrent approval waits and then reads what this one wrote.
            let current: Option<(String,)> =
                sqlx::query_as("UPDATE agents SET scopes = scopes WHERE id = $1 RETURNING scopes")
                    .bind(agent.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((current,)) = current else {
                return Err(StoreError::Conflict(format!(
                    "the agent of request {id} no longer exists"
                )));
            };
            let mut merged = decode_strings("agents.scopes", &current)?;
            merged.extend(added.iter().cloned());
            merged.sort();
            merged.dedup();
            sqlx::query("UPDATE agents SET scopes = $2 WHERE id = $1")
                .bind(agent.as_str())
                .bind(encode(&merged)?)
                .execute(&mut *tx)
                .await?;
            append_events!(tx, &events(&merged));
            merged
        });
        Ok(merged)
    }

    /// Ends a request that is still `pending` as `rejected` or `expired`, or an `approved`
    /// one nobody picked up as `expired` (deleting its agent), with the events. False when
    /// it had already moved on.
    pub async fn close_enrollment(
        &self,
        id: &EnrollmentId,
        status: EnrollmentStatus,
        reason: Option<&str>,
        decided_by: &str,
        now: Timestamp,
        events: &[AuditEvent],
    ) -> Result<bool> {
        let closed = in_transaction!(self, |tx| {
            let row: Option<(Option<String>, String)> = sqlx::query_as(
                "UPDATE enrollments SET status = $2, reason = COALESCE($3, reason), \
                 decided_at = COALESCE(decided_at, $4), decided_by = COALESCE(decided_by, $5) \
                 WHERE id = $1 AND (status = 'pending' OR (status = 'approved' AND $2 = 'expired')) \
                 RETURNING agent_id, kind",
            )
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(reason)
            .bind(now.as_millis())
            .bind(decided_by)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => false,
                Some((agent, kind)) => {
                    // An approved enrollment nobody claimed: its agent never had usable
                    // credentials, so it goes (it holds no leases).
                    if kind == EnrollmentKind::Enroll.as_str()
                        && let Some(agent) = agent
                    {
                        sqlx::query("DELETE FROM agents WHERE id = $1")
                            .bind(agent)
                            .execute(&mut *tx)
                            .await?;
                    }
                    append_events!(tx, events);
                    true
                }
            }
        });
        Ok(closed)
    }

    /// Marks an approved enrollment `claimed` and gives its agent the hashes of the
    /// credentials generated now, with the event. False when it was not (or no longer)
    /// waiting for pickup: the credentials are handed out once.
    pub async fn claim_enrollment(
        &self,
        id: &EnrollmentId,
        token_hash: &TokenHash,
        client_secret_hash: &TokenHash,
        now: Timestamp,
        event: &AuditEvent,
    ) -> Result<bool> {
        let claimed = in_transaction!(self, |tx| {
            let agent: Option<(Option<String>,)> = sqlx::query_as(
                "UPDATE enrollments SET status = 'claimed' \
                 WHERE id = $1 AND status = 'approved' AND expires_at > $2 RETURNING agent_id",
            )
            .bind(id.as_str())
            .bind(now.as_millis())
            .fetch_optional(&mut *tx)
            .await?;
            match agent {
                Some((Some(agent),)) => {
                    sqlx::query(
                        "UPDATE agents SET token_hash = $2, client_secret_hash = $3 WHERE id = $1",
                    )
                    .bind(agent)
                    .bind(token_hash.as_str())
                    .bind(client_secret_hash.as_str())
                    .execute(&mut *tx)
                    .await?;
                    append_event!(tx, event)?;
                    true
                }
                _ => false,
            }
        });
        Ok(claimed)
    }

    /// Live agents admitted by `policy` (for `limits.max_agents`).
    pub async fn count_agents_of_policy(&self, policy: &str) -> Result<u64> {
        let (n,): (i64,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM agents WHERE policy = $1"
        )
        .bind(policy)
        .fetch_one(p)
        .await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Automatic approvals by `policy` since `since` (for `limits.rate`).
    pub async fn count_policy_approvals_since(
        &self,
        policy: &str,
        since: Timestamp,
    ) -> Result<u64> {
        let (n,): (i64,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM enrollments WHERE decided_by = 'policy' AND policy = $1 \
             AND decided_at >= $2"
        )
        .bind(policy)
        .bind(since.as_millis())
        .fetch_one(p)
        .await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

//! Agents: creation, lookup by name or token hash, listing, removal, expiry.

use creddy_core::Timestamp;
use creddy_core::agent::{Agent, NewAgent};
use creddy_core::audit::AuditEvent;
use creddy_core::ids::AgentId;
use creddy_core::scope::Grants;
use creddy_core::secret::TokenHash;

use crate::audit::append_event;
use crate::{Result, Store, StoreError, decode_strings, in_transaction, with_pool};

/// An agent with the number of its open leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentListing {
    /// The agent.
    pub agent: Agent,
    /// Leases in `pending` or `active`.
    pub active_leases: i64,
}

/// The stored columns of an [`Agent`].
#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    name: String,
    scopes: String,
    policy: Option<String>,
    client_id: String,
    created_at: i64,
    last_used: Option<i64>,
    expires_at: Option<i64>,
    trust: Option<String>,
}

/// An agent row followed by one extra column, named `extra`.
#[derive(sqlx::FromRow)]
struct AgentRowWith<T> {
    #[sqlx(flatten)]
    agent: AgentRow,
    extra: T,
}

/// How often, at most, an agent's use is recorded (`last_used`), in milliseconds.
pub const TOUCH_EVERY_MILLIS: i64 = 60_000;

/// An agent row with both its hashes.
#[derive(sqlx::FromRow)]
struct VersionRow {
    #[sqlx(flatten)]
    agent: AgentRow,
    client_secret_hash: String,
    token_hash: String,
}

/// An agent as it was read: every column that what it may do depends on, as stored (its
/// name, grants, policy, credentials and lifetime; not when it was last used). A cache keeps
/// it beside the agent, and a write made on the cached agent's behalf checks in its own
/// transaction that the row still holds exactly these values, so that an agent removed,
/// narrowed or rotated on another node is never served from a stale copy.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentVersion {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) scopes: String,
    pub(crate) policy: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_secret_hash: String,
    pub(crate) token_hash: String,
    pub(crate) expires_at: Option<i64>,
}

impl std::fmt::Debug for AgentVersion {
    // The hashes are of secrets; a version prints only whose it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentVersion")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Evaluates, inside the transaction `$tx`, to whether each agent of `$versions` (a slice of
/// `&AgentVersion`) still holds exactly that version, in one query: a `Vec<bool>` in order.
macro_rules! agents_as_read {
    ($tx:ident, $versions:expr) => {{
        let versions: &[&$crate::agents::AgentVersion] = $versions;
        if versions.is_empty() {
            Vec::new()
        } else {
            let sql = $crate::agents::versions_sql(versions.len());
            let mut query =
                sqlx::query_as::<_, $crate::agents::AgentVersion>(sqlx::AssertSqlSafe(sql));
            for version in versions {
                query = query.bind(version.id.as_str());
            }
            let current: std::collections::HashMap<String, $crate::agents::AgentVersion> = query
                .fetch_all(&mut *$tx)
                .await?
                .into_iter()
                .map(|version| (version.id.clone(), version))
                .collect();
            versions
                .iter()
                .map(|version| current.get(&version.id) == Some(*version))
                .collect::<Vec<bool>>()
        }
    }};
}
pub(crate) use agents_as_read;

/// The versions of `count` agents by id (`$1` to `$count`).
pub(crate) fn versions_sql(count: usize) -> String {
    format!(
        "SELECT id, name, scopes, policy, client_id, client_secret_hash, token_hash, expires_at \
         FROM agents WHERE id IN ({})",
        crate::placeholders(1, count)
    )
}

fn agent_from_row(r: AgentRow) -> Result<Agent> {
    let scopes = decode_strings("agents.scopes", &r.scopes)?;
    let scopes =
        Grants::parse(&scopes).map_err(|e| StoreError::Corrupt(format!("agents.scopes: {e}")))?;
    Ok(Agent {
        id: AgentId::from_stored(r.id),
        name: r.name,
        scopes,
        policy: r.policy,
        client_id: r.client_id,
        created_at: Timestamp::from_millis(r.created_at),
        last_used: r.last_used.map(Timestamp::from_millis),
        expires_at: r.expires_at.map(Timestamp::from_millis),
        trust: r.trust,
        workload: None,
    })
}

/// Open lease states, as an SQL list.
const OPEN_STATES: &str = "('pending', 'active')";

/// The agent as stored by [`insert_agent!`].
pub(crate) fn created(new: &NewAgent) -> Agent {
    Agent {
        id: new.id.clone(),
        name: new.name.as_str().to_owned(),
        scopes: new.scopes.clone(),
        policy: new.policy.clone(),
        client_id: new.client_id.clone(),
        created_at: new.created_at,
        last_used: None,
        expires_at: new.expires_at,
        trust: new.trust.clone(),
        workload: None,
    }
}

/// Inserts a new agent inside the transaction `$tx`.
macro_rules! insert_agent {
    ($tx:expr, $new:expr) => {{
        let new: &creddy_core::agent::NewAgent = $new;
        let result: $crate::Result<()> = async {
            let scopes = serde_json::to_string(&new.scopes.to_strings())
                .map_err(|e| $crate::StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO agents (id, name, name_key, scopes, policy, client_id, token_hash, \
                 client_secret_hash, created_at, last_used, expires_at, trust) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11)",
            )
            .bind(new.id.as_str())
            .bind(new.name.as_str())
            .bind(new.name.unique_key())
            .bind(&scopes)
            .bind(new.policy.as_deref())
            .bind(&new.client_id)
            .bind(new.token_hash.as_str())
            .bind(new.client_secret_hash.as_str())
            .bind(new.created_at.as_millis())
            .bind(new.expires_at.map(creddy_core::Timestamp::as_millis))
            .bind(new.trust.as_deref())
            .execute(&mut *$tx)
            .await?;
            Ok(())
        }
        .await;
        result
    }};
}
pub(crate) use insert_agent;

impl Store {
    /// Creates an agent and records `event`, in one transaction. A name already used (in any
    /// letter case) gives [`StoreError::NameTaken`].
    pub async fn create_agent(&self, new: &NewAgent, event: &AuditEvent) -> Result<Agent> {
        in_transaction!(self, |tx| {
            insert_agent!(tx, new)?;
            append_event!(tx, event)?;
        });
        Ok(created(new))
    }

    /// The agent of that name, compared case-insensitively.
    pub async fn find_agent_by_name(&self, name: &str) -> Result<Option<Agent>> {
        let row: Option<AgentRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust \
             FROM agents WHERE name_key = $1"
        )
        .bind(name.to_ascii_lowercase())
        .fetch_optional(p)
        .await
        })?;
        row.map(agent_from_row).transpose()
    }

    /// The agent holding the vend token with this hash, and the stored hash for a
    /// constant-time comparison by the caller.
    pub async fn find_agent_by_token_hash(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(Agent, TokenHash)>> {
        self.agent_with_hash("token_hash", "token_hash", hash.as_str())
            .await
    }

    /// The agent whose OIDC client id this is, with its client secret hash and the version
    /// it was read at (for a cache: [`Store::record_event_if_agent_is`] checks it).
    pub async fn find_agent_version_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<(Agent, TokenHash, AgentVersion)>> {
        let row: Option<VersionRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust, \
             client_secret_hash, token_hash FROM agents WHERE client_id = $1"
        )
        .bind(client_id)
        .fetch_optional(p)
        .await
        })?;
        let Some(row) = row else { return Ok(None) };
        let version = AgentVersion {
            id: row.agent.id.clone(),
            name: row.agent.name.clone(),
            scopes: row.agent.scopes.clone(),
            policy: row.agent.policy.clone(),
            client_id: row.agent.client_id.clone(),
            client_secret_hash: row.client_secret_hash.clone(),
            token_hash: row.token_hash,
            expires_at: row.agent.expires_at,
        };
        let agent = agent_from_row(row.agent)?;
        Ok(Some((
            agent,
            TokenHash::from_stored(row.client_secret_hash),
            version,
        )))
    }

    /// The agent with this id.
    pub async fn find_agent_by_id(&self, id: &str) -> Result<Option<Agent>> {
        Ok(self
            .agent_with_hash("token_hash", "id", id)
            .await?
            .map(|(agent, _)| agent))
    }

    /// One agent by a unique column, with one of its stored hashes. Only this crate's
    /// constant column names reach the SQL text.
    async fn agent_with_hash(
        &self,
        hash_column: &'static str,
        by: &'static str,
        value: &str,
    ) -> Result<Option<(Agent, TokenHash)>> {
        let sql = format!(
            "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust, \
             {hash_column} AS extra FROM agents WHERE {by} = $1"
        );
        let row: Option<AgentRowWith<String>> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(value)
                .fetch_optional(p)
                .await)?;
        row.map(|r| agent_from_row(r.agent).map(|a| (a, TokenHash::from_stored(r.extra))))
            .transpose()
    }

    /// Every agent, by name, with its open lease count.
    pub async fn list_agents(&self) -> Result<Vec<AgentListing>> {
        let sql = format!(
            "SELECT a.id, a.name, a.scopes, a.policy, a.client_id, a.created_at, a.last_used, \
             a.expires_at, a.trust, (SELECT COUNT(*) FROM leases l WHERE l.agent_id = a.id AND l.state IN {OPEN_STATES}) AS extra \
             FROM agents a ORDER BY a.name_key"
        );
        let rows: Vec<AgentRowWith<i64>> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(p)
                .await)?;
        rows.into_iter()
            .map(|r| {
                let active_leases = r.extra;
                agent_from_row(r.agent).map(|agent| AgentListing {
                    agent,
                    active_leases,
                })
            })
            .collect()
    }

    /// Creates the federated agent `new` (§18; its `trust` set), or refreshes the one of that
    /// name the same trust admitted before: its scopes become `new`'s and its expiry moves to
    /// at least `new.expires_at`. `event` is recorded about the agent in the same
    /// transaction, its details saying whether it was `refreshed`. An agent of that name that the trust did not admit (an ordinary agent,
    /// or another trust's) gives [`StoreError::NameTaken`] and nothing changes: a name
    /// template never takes over an agent.
    pub async fn federate_agent(&self, new: &NewAgent, event: &AuditEvent) -> Result<Agent> {
        if new.trust.is_none() {
            return Err(StoreError::Corrupt(
                "a federated agent needs its trust".into(),
            ));
        }
        let agent = in_transaction!(self, |tx| {
            let sql = if tx.postgres {
                "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust \
                 FROM agents WHERE name_key = $1 FOR UPDATE"
            } else {
                "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust \
                 FROM agents WHERE name_key = $1"
            };
            let existing: Option<AgentRow> = sqlx::query_as(sql)
                .bind(new.name.unique_key())
                .fetch_optional(&mut *tx)
                .await?;
            let agent = match existing {
                None => {
                    insert_agent!(tx, new)?;
                    created(new)
                }
                Some(row) if row.trust.is_some() && row.trust == new.trust => {
                    let expires_at = row.expires_at.max(new.expires_at.map(Timestamp::as_millis));
                    let scopes = serde_json::to_string(&new.scopes.to_strings())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    sqlx::query("UPDATE agents SET scopes = $2, expires_at = $3 WHERE id = $1")
                        .bind(&row.id)
                        .bind(&scopes)
                        .bind(expires_at)
                        .execute(&mut *tx)
                        .await?;
                    agent_from_row(AgentRow {
                        scopes,
                        expires_at,
                        ..row
                    })?
                }
                Some(_) => return Err(StoreError::NameTaken),
            };
            let mut event = event.clone().about_agent(agent.id.as_str(), &agent.name);
            event.details["refreshed"] = serde_json::Value::Bool(agent.id != new.id);
            append_event!(tx, &event)?;
            agent
        });
        Ok(agent)
    }

    /// Deletes the agent with this id and records `event`, in one transaction; its open
    /// leases move to `revoking` so that the revocation engine deletes their credentials.
    /// Returns the number of leases queued, or `None` when no such agent exists.
    pub async fn delete_agent(&self, id: &AgentId, event: &AuditEvent) -> Result<Option<u64>> {
        let queued = in_transaction!(self, |tx| {
            let deleted = sqlx::query("DELETE FROM agents WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Ok(None);
            }
            let sql = format!(
                "UPDATE leases SET state = 'revoking', \
                 due_at = CASE WHEN state = 'active' AND expires_at > $2 THEN $2 ELSE due_at END \
                 WHERE agent_id = $1 AND state IN {OPEN_STATES}"
            );
            let queued = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.as_str())
                .bind(event.time.as_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Its open scope requests end with it, recorded in the same event.
            let closed = sqlx::query(
                "UPDATE enrollments SET status = 'expired', reason = 'the agent was removed', \
                 decided_at = $2, decided_by = 'system' \
                 WHERE agent_id = $1 AND kind = 'amendment' AND status = 'pending'",
            )
            .bind(id.as_str())
            .bind(event.time.as_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let mut event = event.clone();
            if closed > 0
                && let serde_json::Value::Object(details) = &mut event.details
            {
                details.insert("closed_amendments".into(), closed.into());
            }
            append_event!(tx, &event)?;
            queued
        });
        Ok(Some(queued))
    }

    /// Records that the agent authenticated at `now`, unless it already did within the last
    /// minute (so that busy agents do not turn every read into a write). Returns whether the
    /// record changed.
    pub async fn touch_agent(&self, id: &AgentId, now: Timestamp) -> Result<bool> {
        let stale_before = now.as_millis() - TOUCH_EVERY_MILLIS;
        let updated = with_pool!(self, |p| {
            sqlx::query(
            "UPDATE agents SET last_used = $1 WHERE id = $2 AND (last_used IS NULL OR last_used < $3)"
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .bind(stale_before)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(updated > 0)
    }

    /// Agents whose lifetime ended at or before `now`, oldest expiry first, at most `limit`.
    pub async fn expired_agents(&self, now: Timestamp, limit: i64) -> Result<Vec<Agent>> {
        let rows: Vec<AgentRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust \
             FROM agents WHERE expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2"
        )
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(p)
        .await
        })?;
        rows.into_iter().map(agent_from_row).collect()
    }

    /// Agents unused since before `before` (never used: since their creation), longest idle
    /// first, at most `limit` (for `agents.inactivity_days`).
    pub async fn idle_agents(&self, before: Timestamp, limit: i64) -> Result<Vec<Agent>> {
        let rows: Vec<AgentRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, name, scopes, policy, client_id, created_at, last_used, expires_at, trust \
             FROM agents WHERE COALESCE(last_used, created_at) < $1 \
             ORDER BY COALESCE(last_used, created_at) LIMIT $2"
        )
        .bind(before.as_millis())
        .bind(limit)
        .fetch_all(p)
        .await
        })?;
        rows.into_iter().map(agent_from_row).collect()
    }

    /// The earliest agent expiry still ahead, if any.
    pub async fn next_agent_expiry(&self) -> Result<Option<Timestamp>> {
        let (next,): (Option<i64>,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT MIN(expires_at) FROM agents WHERE expires_at IS NOT NULL"
        )
        .fetch_one(p)
        .await)?;
        Ok(next.map(Timestamp::from_millis))
    }

    /// The number of agents.
    pub async fn count_agents(&self) -> Result<i64> {
        let (n,): (i64,) = with_pool!(self, |p| sqlx::query_as("SELECT COUNT(*) FROM agents")
            .fetch_one(p)
            .await)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::AgentVersion;

    #[test]
    fn a_version_prints_whose_it_is_and_no_hash() {
        let version = AgentVersion {
            id: "ag_1".into(),
            name: "ci".into(),
            scopes: "[\"daytona\"]".into(),
            policy: None,
            client_id: "client-1".into(),
            client_secret_hash: "5ec7e75ec7e7".into(),
            token_hash: "70c3e570c3e5".into(),
            expires_at: None,
        };
        let printed = format!("{version:?}");
        assert!(printed.contains("ag_1"), "{printed}");
        for hash in ["5ec7e75ec7e7", "70c3e570c3e5"] {
            assert!(!printed.contains(hash), "a hash shows in {printed}");
        }
    }
}

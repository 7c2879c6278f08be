//! The audit trail: appending inside a caller's transaction, and reading back.

use creddy_core::audit::AuditEvent;
use serde::Serialize;
use serde_json::Value;

use crate::agents::{AgentVersion, agents_as_read};
use crate::group_commit::{self, Done, Write};
use crate::leases::{ActivationRun, activate_rows, fail_row, record_intents, settle_row};
use crate::{NewLease, Result, Store, StoreError, in_transaction, with_pool};

/// Appends `$events` (a slice of `&AuditEvent`) to the chain inside the transaction `$tx`, in
/// order, in three statements however many there are: the head advances by their number
/// (which locks it until the transaction ends), one multi-row insert, the head's new hash.
/// Evaluates to their sequence numbers. Any failure is reported as
/// [`StoreError::AuditUnavailable`], and the caller's transaction, dropped on the error, rolls
/// the whole change back.
macro_rules! append_chain {
    ($tx:expr, $events:expr) => {{
        let events: &[&creddy_core::audit::AuditEvent] = $events;
        let result: std::result::Result<Vec<i64>, sqlx::Error> = async {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
            let (last, mut prev_hash): (i64, String) = sqlx::query_as(
                "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash",
            )
            .bind(count)
            .fetch_one(&mut *$tx)
            .await?;
            let first = last - count + 1;
            let mut rows = Vec::with_capacity(events.len());
            for (seq, event) in (first..=last).zip(events) {
                let hash = event.chain_hash(seq, &prev_hash);
                let mac = $tx
                    .key
                    .as_ref()
                    .map(|key| creddy_core::audit::keyed_hash(key, &hash));
                let previous = std::mem::replace(&mut prev_hash, hash.clone());
                rows.push(($crate::audit::EventColumns::of(event), previous, hash, mac));
            }
            let sql = $crate::audit::insert_events_sql(events.len());
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((seq, event), (columns, previous, hash, mac)) in
                (first..=last).zip(events).zip(rows)
            {
                insert = insert
                    .bind(seq)
                    .bind(event.id.as_str())
                    .bind(event.time.as_millis())
                    .bind(event.action.as_str())
                    .bind(columns.actor)
                    .bind(columns.subject)
                    .bind(event.backend.as_deref())
                    .bind(event.lease_id.as_deref())
                    .bind(columns.outcome)
                    .bind(event.ip.as_deref())
                    .bind(event.request_id.as_deref())
                    .bind(columns.details)
                    .bind(previous)
                    .bind(hash)
                    .bind(mac);
            }
            insert.execute(&mut *$tx).await?;
            sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
                .bind(&prev_hash)
                .execute(&mut *$tx)
                .await?;
            Ok((first..=last).collect())
        }
        .await;
        result.map_err($crate::StoreError::AuditUnavailable)
    }};
}
pub(crate) use append_chain;

/// Appends `$event` to the chain inside the transaction `$tx`; evaluates to its sequence
/// number (see [`append_chain`]).
macro_rules! append_event {
    ($tx:expr, $event:expr) => {{
        let event: &creddy_core::audit::AuditEvent = $event;
        $crate::audit::append_chain!($tx, &[event]).map(|seqs| seqs.first().copied().unwrap_or(0))
    }};
}
pub(crate) use append_event;

/// `INSERT INTO audit_events … VALUES (…), (…)` for `rows` rows of bound parameters.
pub(crate) fn insert_events_sql(rows: usize) -> String {
    let columns = EVENT_COLUMNS.split(',').count();
    format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES {}",
        crate::value_rows(rows, columns)
    )
}

/// Appends every event of `$events` inside the transaction `$tx`, in order.
macro_rules! append_events {
    ($tx:expr, $events:expr) => {{
        let events: &[creddy_core::audit::AuditEvent] = $events;
        for event in events {
            $crate::audit::append_event!($tx, event)?;
        }
    }};
}
pub(crate) use append_events;

/// Runs the statement `$query` inside the transaction `$tx` and, when it changed a row,
/// appends `$event`; evaluates to whether it changed one. A change that touches nothing is
/// not an event.
macro_rules! change_with_event {
    ($tx:ident, $query:expr, $event:expr) => {{
        let changed = $query.execute(&mut *$tx).await?.rows_affected() > 0;
        if changed {
            $crate::audit::append_event!($tx, $event)?;
        }
        changed
    }};
}
pub(crate) use change_with_event;

/// The JSON-valued columns of an event, as text.
pub(crate) struct EventColumns {
    pub(crate) actor: String,
    pub(crate) subject: Option<String>,
    pub(crate) outcome: String,
    pub(crate) details: String,
}

impl EventColumns {
    pub(crate) fn of(event: &AuditEvent) -> Self {
        Self {
            actor: to_json_text(&event.actor),
            subject: event.subject.as_ref().map(to_json_text),
            outcome: serde_json::to_value(event.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            details: event.details.to_string(),
        }
    }
}

/// Serialises a plain struct (which cannot fail) to JSON text.
fn to_json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .unwrap_or(Value::Null)
        .to_string()
}

/// A recorded event, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Position in the chain, gap-free from 1.
    pub seq: i64,
    /// `evt_<ULID>`.
    pub id: String,
    /// Milliseconds since the epoch.
    pub time: i64,
    /// The action name.
    pub action: String,
    /// Who did it.
    pub actor: Value,
    /// The agent concerned.
    pub subject: Option<Value>,
    /// The backend concerned.
    pub backend: Option<String>,
    /// The lease concerned.
    pub lease_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The caller's address.
    pub ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// Action-specific facts.
    pub details: Value,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
    /// Its keyed hash (absent on records written before the server knew the master key).
    #[serde(skip)]
    pub mac: Option<String>,
}

impl StoredEvent {
    /// The record its hash covers: every stored field with `seq` and `prev_hash`, without
    /// `hash` and `mac`.
    pub fn record(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "time": self.time,
            "action": self.action,
            "actor": self.actor,
            "subject": self.subject,
            "backend": self.backend,
            "lease_id": self.lease_id,
            "outcome": self.outcome,
            "ip": self.ip,
            "request_id": self.request_id,
            "details": self.details,
            "seq": self.seq,
            "prev_hash": self.prev_hash,
        })
    }
}

/// Filters for [`Store::audit_page`].
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events about the agent of this name.
    pub agent_name: Option<String>,
    /// Events about the agent of this id.
    pub agent_id: Option<String>,
    /// Events about this backend.
    pub backend: Option<String>,
    /// Events of this action.
    pub action: Option<String>,
    /// Events about this lease.
    pub lease_id: Option<String>,
    /// Events at or after this time (ms).
    pub since: Option<i64>,
    /// Events before this time (ms).
    pub until: Option<i64>,
    /// Events older than this `seq` (paging).
    pub before_seq: Option<i64>,
}

/// `value` as a LIKE pattern that matches it literally inside JSON text.
fn like_json_field(field: &str, value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    let escaped = quoted
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%\"{field}\":{escaped}%")
}

/// The stored columns of a [`StoredEvent`] ([`EVENT_COLUMNS`]).
#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    id: String,
    time: i64,
    action: String,
    actor: String,
    subject: Option<String>,
    backend: Option<String>,
    lease_id: Option<String>,
    outcome: String,
    ip: Option<String>,
    request_id: Option<String>,
    details: String,
    prev_hash: String,
    hash: String,
    mac: Option<String>,
}

/// The columns of an [`EventRow`].
const EVENT_COLUMNS: &str = "seq, id, time, action, actor, subject, backend, lease_id, outcome, ip, \
     request_id, details, prev_hash, hash, mac";

fn parse_json(column: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("audit {column}: {e}")))
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self> {
        Ok(Self {
            actor: parse_json("actor", &r.actor)?,
            subject: r
                .subject
                .as_deref()
                .map(|s| parse_json("subject", s))
                .transpose()?,
            details: parse_json("details", &r.details)?,
            seq: r.seq,
            id: r.id,
            time: r.time,
            action: r.action,
            backend: r.backend,
            lease_id: r.lease_id,
            outcome: r.outcome,
            ip: r.ip,
            request_id: r.request_id,
            prev_hash: r.prev_hash,
            hash: r.hash,
            mac: r.mac,
        })
    }
}

impl Store {
    /// Records an event that accompanies no other change (for example a node creating its
    /// admin token).
    pub async fn record_event(&self, event: &AuditEvent) -> Result<i64> {
        match self.write(Write::Event(event.clone())).await? {
            Done::Event(seq) => Ok(seq),
            other => Err(other.unexpected()),
        }
    }

    /// Records `event` on behalf of an agent read earlier (from a cache) only if the agent
    /// is still exactly `version` in the same transaction; `None` (nothing written) when it
    /// was removed or changed since.
    pub async fn record_event_if_agent_is(
        &self,
        event: &AuditEvent,
        version: &AgentVersion,
    ) -> Result<Option<i64>> {
        let write = Write::EventIfAgent {
            event: event.clone(),
            version: version.clone(),
        };
        match self.write(write).await? {
            Done::Event(seq) => Ok(Some(seq)),
            Done::Stale => Ok(None),
            other => Err(other.unexpected()),
        }
    }

    /// What group commit has committed for the writes on this handle (fewer transactions
    /// than writes means they were batched).
    pub fn commit_stats(&self) -> group_commit::CommitStats {
        self.events
            .as_ref()
            .map(group_commit::Queue::stats)
            .unwrap_or_default()
    }

    /// Applies `writes` in one transaction and commits it (group commit's writer, or one
    /// write on its own): first every agent version the batch relies on is checked in one
    /// query, then the lease intents are recorded together (a batch brings them first, in
    /// lock order), then the other writes run in order (consecutive activations in one
    /// statement), and last the events of the writes that happened are appended to the chain
    /// in the writes' order, in one go. What became of each write, in the same order.
    pub(crate) async fn apply_batch_now(&self, writes: &[&Write]) -> Result<Vec<Done>> {
        let versions: Vec<&AgentVersion> = writes
            .iter()
            .filter_map(|write| match write {
                Write::EventIfAgent { version, .. } => Some(version),
                _ => None,
            })
            .collect();
        let intents: Vec<(&NewLease, u32)> = writes
            .iter()
            .filter_map(|write| match write {
                Write::Intent { lease, max_open } => Some((lease, *max_open)),
                _ => None,
            })
            .collect();
        let done = in_transaction!(self, |tx| {
            let mut as_read = agents_as_read!(tx, &versions).into_iter();
            let mut recorded = record_intents!(tx, &intents).into_iter();
            let mut done: Vec<Option<Done>> = writes.iter().map(|_| None).collect();
            let mut run = ActivationRun::default();
            for (index, write) in writes.iter().enumerate() {
                let outcome = match write {
                    Write::Event(_) => Done::Event(0),
                    Write::EventIfAgent { .. } if as_read.next().unwrap_or(false) => Done::Event(0),
                    Write::EventIfAgent { .. } => Done::Stale,
                    Write::Intent { .. } => {
                        Done::Intent(recorded.next().ok_or_else(|| {
                            StoreError::Corrupt("an intent went undecided".into())
                        })?)
                    }
                    Write::Activate(activation) => {
                        if run.holds(activation) {
                            run.settle(activate_rows!(tx, &run.activations), &mut done);
                        }
                        run.push(index, activation);
                        continue;
                    }
                    Write::Fail(failure) => {
                        run.settle(activate_rows!(tx, &run.activations), &mut done);
                        fail_row!(tx, failure);
                        Done::Failed
                    }
                    Write::Settle(settlement) => {
                        run.settle(activate_rows!(tx, &run.activations), &mut done);
                        Done::Settled(settle_row!(tx, settlement))
                    }
                };
                done[index] = Some(outcome);
            }
            if !run.activations.is_empty() {
                run.settle(activate_rows!(tx, &run.activations), &mut done);
            }
            let done: Vec<Done> = done
                .into_iter()
                .map(|outcome| {
                    outcome.ok_or_else(|| StoreError::Corrupt("a write went undecided".into()))
                })
                .collect::<Result<_>>()?;
            let events: Vec<(usize, &AuditEvent)> = writes
                .iter()
                .zip(&done)
                .enumerate()
                .filter_map(|(index, (write, outcome))| Some((index, write.event_if(outcome)?)))
                .collect();
            let chained: Vec<&AuditEvent> = events.iter().map(|(_, event)| *event).collect();
            let seqs = append_chain!(tx, &chained)?;
            let mut done = done;
            for ((index, _), seq) in events.iter().zip(seqs) {
                if let Some(Done::Event(slot)) = done.get_mut(*index) {
                    *slot = seq;
                }
            }
            done
        });
        Ok(done)
    }

    /// The newest `limit` events, newest first.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<StoredEvent>> {
        self.audit_page(&AuditFilter::default(), limit).await
    }

    /// Events matching `filter`, newest first, at most `limit`.
    pub async fn audit_page(&self, filter: &AuditFilter, limit: i64) -> Result<Vec<StoredEvent>> {
        let mut conditions: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        // Text values are bound first ($1…), then numbers, then the limit.
        for (condition, value) in [
            (
                "subject LIKE ${} ESCAPE '\\'",
                filter
                    .agent_name
                    .as_deref()
                    .map(|n| like_json_field("agent_name", n)),
            ),
            (
                "subject LIKE ${} ESCAPE '\\'",
                filter
                    .agent_id
                    .as_deref()
                    .map(|n| like_json_field("agent_id", n)),
            ),
            ("backend = ${}", filter.backend.clone()),
            ("action = ${}", filter.action.clone()),
            ("lease_id = ${}", filter.lease_id.clone()),
        ] {
            if let Some(value) = value {
                texts.push(value);
                conditions.push(condition.replace("{}", &texts.len().to_string()));
            }
        }
        for (condition, value) in [
            ("time >= ${}", filter.since),
            ("time < ${}", filter.until),
            ("seq < ${}", filter.before_seq),
        ] {
            if let Some(value) = value {
                numbers.push(value);
                conditions
                    .push(condition.replace("{}", &(texts.len() + numbers.len()).to_string()));
            }
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events {filter_sql} ORDER BY seq DESC LIMIT ${}",
            texts.len() + numbers.len() + 1
        );
        let rows: Vec<EventRow> = with_pool!(self, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for text in &texts {
                query = query.bind(text.as_str());
            }
            for number in &numbers {
                query = query.bind(*number);
            }
            query.bind(limit).fetch_all(p).await
        })?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    /// Events after `after_seq` in chain order, at most `limit` (for verification).
    pub async fn events_after(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        let rows: Vec<EventRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(after_seq)
                .bind(limit)
                .fetch_all(p)
                .await)?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    /// Checks that the trail's head and its newest record agree and that the newest record
    /// can be read: a cheap sign, for readiness, that the database is not damaged or cut.
    pub async fn check_audit_head(&self) -> Result<()> {
        let (seq, hash): (i64, String) = with_pool!(self, |p| sqlx::query_as(
            "SELECT seq, hash FROM audit_head WHERE id = 1"
        )
        .fetch_one(p)
        .await)?;
        if seq == 0 {
            return Ok(());
        }
        let sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq = $1");
        let row: Option<EventRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(seq)
                .fetch_optional(p)
                .await)?;
        let newest = row.map(StoredEvent::try_from).transpose()?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the audit record {seq} named by the head is missing"
            ))
        })?;
        if newest.hash != hash {
            return Err(StoreError::Corrupt(format!(
                "the audit head does not match record {seq}"
            )));
        }
        Ok(())
    }

    /// The anchor of a pruned chain: the last pruned record's `seq` and hash, with their
    /// keyed hash. `None` when nothing was ever pruned.
    pub async fn audit_anchor(&self) -> Result<Option<AuditAnchor>> {
        let Some(text) = self.meta(ANCHOR_KEY).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("the audit anchor: {e}")))
    }

    /// Prunes the records older than `before` (a prefix of the chain: through the record
    /// just before the first one at or after `before`), records the last pruned one as the
    /// new anchor with its keyed hash, and appends `event` (given the anchor) in the same
    /// transaction. Returns the anchor, or `None` when nothing was old enough.
    pub async fn prune_audit(
        &self,
        before: creddy_core::Timestamp,
        event: impl FnOnce(&AuditAnchor, i64) -> AuditEvent,
    ) -> Result<Option<AuditAnchor>> {
        let Some(key) = self.audit_key() else {
            return Err(StoreError::Conflict(
                "the audit key is not set; nothing is pruned".into(),
            ));
        };
        let pruned = in_transaction!(self, |tx| {
            // The head row serialises this with every append.
            let (head,): (i64,) =
                sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq")
                    .fetch_one(&mut *tx)
                    .await?;
            let (first_young,): (Option<i64>,) =
                sqlx::query_as("SELECT MIN(seq) FROM audit_events WHERE time >= $1")
                    .bind(before.as_millis())
                    .fetch_one(&mut *tx)
                    .await?;
            let through = first_young.map_or(head, |s| s - 1);
            let row: Option<(i64, String)> =
                sqlx::query_as("SELECT seq, hash FROM audit_events WHERE seq = $1")
                    .bind(through)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((seq, hash)) = row else {
                return Ok(None);
            };
            let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let anchor = AuditAnchor {
                seq,
                mac: creddy_core::audit::anchor_mac(&key, seq, &hash),
                hash,
            };
            let text =
                serde_json::to_string(&anchor).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(ANCHOR_KEY)
            .bind(&text)
            .execute(&mut *tx)
            .await?;
            let event = event(&anchor, i64::try_from(deleted).unwrap_or(i64::MAX));
            append_event!(tx, &event)?;
            Some(anchor)
        });
        Ok(pruned)
    }
}

/// The meta key of the chain anchor.
const ANCHOR_KEY: &str = "audit_anchor";

/// Where a pruned chain starts: after record `seq`, whose hash was `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AuditAnchor {
    /// The last pruned record.
    pub seq: i64,
    /// Its chain hash.
    pub hash: String,
    /// The keyed hash of `seq` and `hash` under the audit key.
    pub mac: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_multi_row_insert_numbers_its_parameters_row_after_row() {
        let sql = super::insert_events_sql(2);
        assert!(
            sql.starts_with("INSERT INTO audit_events (seq, id, time,"),
            "{sql}"
        );
        assert!(
            sql.ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15), ($16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)"),
            "{sql}"
        );
    }
}

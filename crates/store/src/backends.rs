//! Backends: configured instances of plugins. The configuration is stored sealed; the store
//! never sees it in the clear.

use creddy_core::Timestamp;
use creddy_core::audit::AuditEvent;
use creddy_core::backend::BackendState;
use creddy_core::ids::BackendId;

use crate::audit::{append_event, append_events, change_with_event};
use crate::{Result, Store, in_transaction, parse_name, with_pool};

/// A backend as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRecord {
    /// `be_<ULID>`.
    pub id: BackendId,
    /// The backend's name (`daytona`, `daytona-prod`).
    pub name: String,
    /// The plugin type.
    pub plugin: String,
    /// The plugin version it was configured with.
    pub plugin_version: String,
    /// The sealed configuration.
    pub sealed_config: String,
    /// `active` or `draining`.
    pub state: BackendState,
    /// When it was added.
    pub created_at: Timestamp,
    /// Leases in `pending` or `active`.
    pub open_leases: i64,
}

/// The stored columns of a [`BackendRecord`], with its open lease count.
#[derive(sqlx::FromRow)]
struct BackendRow {
    id: String,
    name: String,
    #[sqlx(rename = "type")]
    plugin: String,
    plugin_version: String,
    config: String,
    state: String,
    created_at: i64,
    open_leases: i64,
}

fn from_row(r: BackendRow) -> Result<BackendRecord> {
    Ok(BackendRecord {
        state: parse_name("backends.state", &r.state)?,
        id: BackendId::from_stored(r.id),
        name: r.name,
        plugin: r.plugin,
        plugin_version: r.plugin_version,
        sealed_config: r.config,
        created_at: Timestamp::from_millis(r.created_at),
        open_leases: r.open_leases,
    })
}

impl Store {
    /// Stores a new backend and records `event`; a used name gives
    /// [`StoreError::NameTaken`](crate::StoreError::NameTaken).
    pub async fn create_backend(&self, backend: &BackendRecord, event: &AuditEvent) -> Result<()> {
        in_transaction!(self, |tx| {
            sqlx::query(
                "INSERT INTO backends (id, name, type, plugin_version, config, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(backend.id.as_str())
            .bind(&backend.name)
            .bind(&backend.plugin)
            .bind(&backend.plugin_version)
            .bind(&backend.sealed_config)
            .bind(backend.state.as_str())
            .bind(backend.created_at.as_millis())
            .execute(&mut *tx)
            .await?;
            append_event!(tx, event)?;
        });
        Ok(())
    }

    /// Every backend, by name, with its open lease count.
    pub async fn list_backends(&self) -> Result<Vec<BackendRecord>> {
        self.backends_named(None).await
    }

    /// The backend of that name.
    pub async fn find_backend(&self, name: &str) -> Result<Option<BackendRecord>> {
        Ok(self.backends_named(Some(name)).await?.into_iter().next())
    }

    /// Every backend, or the one named `name`, by name, with its open lease count.
    async fn backends_named(&self, name: Option<&str>) -> Result<Vec<BackendRecord>> {
        let rows: Vec<BackendRow> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT b.id, b.name, b.type, b.plugin_version, b.config, b.state, b.created_at, \
                 (SELECT COUNT(*) FROM leases l WHERE l.backend = b.name AND l.state IN ('pending', 'active')) AS open_leases \
                 FROM backends b WHERE ($1 IS NULL OR b.name = $1) ORDER BY b.name",
            )
            .bind(name)
            .fetch_all(p)
            .await
        })?;
        rows.into_iter().map(from_row).collect()
    }

    /// Deletes the backend and records `event`; false when there was none.
    pub async fn delete_backend(&self, name: &str, event: &AuditEvent) -> Result<bool> {
        let deleted = in_transaction!(self, |tx| change_with_event!(
            tx,
            sqlx::query("DELETE FROM backends WHERE name = $1").bind(name),
            event
        ));
        Ok(deleted)
    }

    /// Starts removing a backend: it becomes `draining` (no new lease is accepted for it)
    /// and its `pending` and `active` leases are queued for revocation, with `event`, in one
    /// transaction. Returns the number of leases still open (including `irrevocable` ones),
    /// or `None` when there is no such backend.
    pub async fn drain_backend(
        &self,
        name: &str,
        now: Timestamp,
        event: &AuditEvent,
    ) -> Result<Option<i64>> {
        let open = in_transaction!(self, |tx| {
            let found = sqlx::query("UPDATE backends SET state = 'draining' WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if found == 0 {
                return Ok(None);
            }
            sqlx::query(
                "UPDATE leases SET state = 'revoking', \
                 due_at = CASE WHEN state = 'active' AND expires_at > $2 THEN $2 ELSE due_at END \
                 WHERE backend = $1 AND state IN ('pending', 'active')",
            )
            .bind(name)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
            let (open,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM leases WHERE backend = $1 \
                 AND state IN ('pending', 'active', 'revoking', 'irrevocable')",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            append_event!(tx, event)?;
            open
        });
        Ok(Some(open))
    }

    /// The `draining` backends none of whose leases is still open: ready to be deleted.
    pub async fn drained_backends(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = with_pool!(self, |p| sqlx::query_as(
            "SELECT b.name FROM backends b WHERE b.state = 'draining' AND NOT EXISTS \
             (SELECT 1 FROM leases l WHERE l.backend = b.name \
             AND l.state IN ('pending', 'active', 'revoking', 'irrevocable')) ORDER BY b.name"
        )
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Sets a shared value and records `events`, in one transaction.
    pub async fn meta_set(&self, key: &str, value: &str, events: &[AuditEvent]) -> Result<()> {
        in_transaction!(self, |tx| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
            append_events!(tx, events);
        });
        Ok(())
    }

    /// A value shared by every node, if set.
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = with_pool!(self, |p| sqlx::query_as(
            "SELECT value FROM meta WHERE key = $1"
        )
        .bind(key)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(|r| r.0))
    }

    /// Sets a shared value unless one is already there; returns the value in force.
    pub async fn meta_insert_if_absent(&self, key: &str, value: &str) -> Result<String> {
        with_pool!(self, |p| sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
        )
        .bind(key)
        .bind(value)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(self.meta(key).await?.unwrap_or_else(|| value.to_owned()))
    }
}

//! Versioned schema migrations, one directory per dialect, applied at start.
//!
//! Each migration runs in the transaction that records it. On PostgreSQL an advisory lock
//! taken inside that transaction serialises nodes that start together; on SQLite the
//! transaction's write lock does the same.

use creddy_core::{Clock, SystemClock};

use crate::{Pool, Result, Store, StoreError, in_transaction};

/// `(version, SQLite text, PostgreSQL text)`, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../migrations/sqlite/0002_backends_leases.sql"),
        include_str!("../migrations/postgres/0002_backends_leases.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_revocation_schedule.sql"),
        include_str!("../migrations/postgres/0003_revocation_schedule.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_claims.sql"),
        include_str!("../migrations/postgres/0004_claims.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_due_index.sql"),
        include_str!("../migrations/postgres/0005_due_index.sql"),
    ),
    (
        6,
        include_str!("../migrations/sqlite/0006_enrollments.sql"),
        include_str!("../migrations/postgres/0006_enrollments.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_audit_mac.sql"),
        include_str!("../migrations/postgres/0007_audit_mac.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_signing_keys.sql"),
        include_str!("../migrations/postgres/0008_signing_keys.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_audit_time.sql"),
        include_str!("../migrations/postgres/0009_audit_time.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_federation.sql"),
        include_str!("../migrations/postgres/0010_federation.sql"),
    ),
];

/// An arbitrary constant naming creddy's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x0063_7265_6464_7901;

const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// Applies every migration newer than the database's version.
pub(crate) async fn apply(store: &Store) -> Result<()> {
    let supported = MIGRATIONS.last().map_or(0, |m| m.0);
    in_transaction!(store, |tx| {
        if matches!(store.pool, Pool::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(CREATE_VERSIONS).execute(&mut *tx).await?;
        let (current,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await?;
        let current = current.unwrap_or(0);
        if current > supported {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        for (version, sqlite, postgres) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let text = match store.pool {
                Pool::Sqlite(_) => *sqlite,
                Pool::Postgres(_) => *postgres,
            };
            sqlx::raw_sql(text).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(SystemClock.now().as_millis())
                .execute(&mut *tx)
                .await?;
            tracing::info!(version, "applied schema migration");
        }
    });
    Ok(())
}

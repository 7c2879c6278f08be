//! The store: the operations creddy's domain needs, on SQLite or PostgreSQL.
//!
//! One [`Store`] type fronts both databases. Every query is written once, in SQL that both
//! dialects run (`$1` parameters, `RETURNING`, integers for times and flags); the only
//! dialect differences are the migrations (one directory per dialect), how a write
//! transaction begins, and how migrations are serialised across nodes. Those live in this
//! file and in [`migrate`], nowhere else.
//!
//! **Invariant: every state change writes its audit record in the same transaction.** Every
//! operation that changes state takes an [`AuditEvent`] and appends it inside its own
//! transaction; a failed append rolls the change back and surfaces as
//! [`StoreError::AuditUnavailable`].

mod agents;
mod audit;
mod backends;
mod enrollments;
pub mod group_commit;
mod keys;
mod leases;
mod migrate;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use creddy_core::secret::Secret;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use agents::{AgentListing, AgentVersion, TOUCH_EVERY_MILLIS};
pub use audit::{AuditAnchor, AuditFilter, StoredEvent};
pub use backends::BackendRecord;
pub use enrollments::{Enrollment, NewEnrollment};
pub use keys::SigningKeyRecord;
pub use leases::{
    Intent, LeaseFilter, LeaseRecord, LeaseSummary, MAX_LEASE_PAGE, NewLease, Queued,
    RevocableLease,
};

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl Location {
    /// A description safe for logs: the SQLite path, or the PostgreSQL host and database
    /// without user or password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite ({})", path.display()),
            Location::Postgres(url) => match PgConnectOptions::from_str(url) {
                Ok(o) => format!(
                    "postgresql ({}:{}/{})",
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or("postgres")
                ),
                Err(_) => "postgresql".to_owned(),
            },
        }
    }
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is already in use.
    #[error("the name is already taken")]
    NameTaken,
    /// The database could not be reached or refused the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The audit record could not be written, so the change was rolled back.
    #[error("audit trail unavailable: {0}")]
    AuditUnavailable(#[source] sqlx::Error),
    /// The database holds a value this version cannot read.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer creddy.
    #[error(
        "the database schema is version {found}, newer than this creddy supports ({supported}); upgrade creddy"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The database URL or path is not usable.
    #[error("invalid database location: {0}")]
    InvalidLocation(String),
    /// The change conflicts with the stored state (the message says how).
    #[error("{0}")]
    Conflict(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e.as_database_error() {
            Some(db) if db.is_unique_violation() => StoreError::NameTaken,
            Some(db) if is_damaged(db) => StoreError::Corrupt(db.message().to_owned()),
            _ => StoreError::Unavailable(e),
        }
    }
}

/// SQLite's answer for a damaged file (`SQLITE_CORRUPT`, `SQLITE_NOTADB` and their extended
/// codes), and PostgreSQL's `XX001`/`XX002` (data or index corrupted).
fn is_damaged(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    match code.parse::<u32>() {
        Ok(sqlite) => matches!(sqlite & 0xff, 11 | 26),
        Err(_) => matches!(code.as_ref(), "XX001" | "XX002"),
    }
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The handle to creddy's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    location: Location,
    /// The key of the audit records' keyed hashes, once the server knows the master key.
    /// Never printed, wiped when replaced or dropped.
    audit_key: std::sync::Arc<std::sync::RwLock<Option<Secret<[u8; 32]>>>>,
    /// Where `record_event` queues its events for group commit (none on the handle the
    /// committing task itself holds).
    events: Option<group_commit::Queue>,
}

/// A write transaction that knows the audit key, so that every event appended in it gets
/// its keyed hash; it dereferences to the connection like the transaction itself.
pub(crate) struct KeyedTx<T> {
    pub(crate) inner: T,
    pub(crate) key: Option<[u8; 32]>,
    /// Whether the transaction is PostgreSQL's (for the little SQL the dialects disagree on).
    pub(crate) postgres: bool,
}

/// `count` numbered placeholders from `$first`, comma-separated: `$3, $4, $5`.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    list.join(", ")
}

/// `rows` parenthesised rows of `columns` numbered placeholders from `$1`, for a multi-row
/// `VALUES`: `($1, $2), ($3, $4)`.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    let list: Vec<String> = (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect();
    list.join(", ")
}

impl<T: std::ops::Deref> std::ops::Deref for KeyedTx<T> {
    type Target = T::Target;
    fn deref(&self) -> &T::Target {
        &self.inner
    }
}

impl<T: std::ops::DerefMut> std::ops::DerefMut for KeyedTx<T> {
    fn deref_mut(&mut self) -> &mut T::Target {
        &mut self.inner
    }
}

impl Store {
    /// Gives every later audit record a keyed hash under `key` (derived from the master key).
    pub fn set_audit_key(&self, key: [u8; 32]) {
        *self
            .audit_key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Secret::new(key));
    }

    pub(crate) fn audit_key(&self) -> Option<[u8; 32]> {
        self.audit_key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|k| *k.expose())
    }
}

/// Runs `$body` with `$p` bound to the pool of either dialect; the body is written once and
/// compiled for both.
macro_rules! with_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx` and commits it; an early return or
/// an error drops the transaction, which rolls it back. SQLite takes its write lock at the
/// start (`BEGIN IMMEDIATE`) so that a read-then-write never fails half way.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite(p) => {
                let mut $tx = $crate::KeyedTx {
                    inner: p.begin_with("BEGIN IMMEDIATE").await?,
                    key: $store.audit_key(),
                    postgres: false,
                };
                let out = $body;
                $tx.inner.commit().await?;
                out
            }
            $crate::Pool::Postgres(p) => {
                let mut $tx = $crate::KeyedTx {
                    inner: p.begin().await?,
                    key: $store.audit_key(),
                    postgres: true,
                };
                let out = $body;
                $tx.inner.commit().await?;
                out
            }
        }
    };
}

pub(crate) use {in_transaction, with_pool};

impl Store {
    /// Opens the state at `location`, creating an SQLite file if needed, and applies
    /// migrations.
    pub async fn open(location: Location) -> Result<Self> {
        let pool = match &location {
            Location::Sqlite(path) => Pool::Sqlite(open_sqlite(path).await?),
            Location::Postgres(url) => Pool::Postgres(open_postgres(url).await?),
        };
        let mut store = Self {
            pool,
            location,
            audit_key: std::sync::Arc::default(),
            events: None,
        };
        migrate::apply(&store).await?;
        store.events = Some(group_commit::Queue::start(store.clone()));
        Ok(store)
    }

    /// Where the state lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }
}

async fn open_sqlite(path: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a committed lease survives power loss, not only a process crash.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        // A connection to a local file does not go stale; the check would be one more hand-off
        // to the connection's worker thread on every query.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

async fn open_postgres(url: &str) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url).map_err(|_| {
        StoreError::InvalidLocation("the PostgreSQL URL could not be parsed".into())
    })?;
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

/// Decodes a JSON array of strings stored in a text column.
/// A stored name of a closed set (a lease state, a request kind or status), parsed once
/// here; anything else is a damaged row.
fn parse_name<T>(column: &str, text: &str) -> Result<T>
where
    T: std::str::FromStr<Err = creddy_core::closed_set::UnknownName>,
{
    text.parse()
        .map_err(|e: creddy_core::closed_set::UnknownName| {
            StoreError::Corrupt(format!("{column}: {e}"))
        })
}

fn decode_strings(column: &str, text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

//! Fresh stores for tests: an SQLite file in a temporary directory, or a database in a
//! private PostgreSQL cluster.

use creddy_store::{Location, Store};
use tempfile::TempDir;

use crate::postgres::PgCluster;

/// The dialects the conformance suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite.
    Sqlite,
    /// A private PostgreSQL cluster.
    Postgres,
}

/// A store and what keeps it alive.
#[derive(Debug)]
pub struct TestStore {
    /// The store.
    pub store: Store,
    /// Where it lives, for opening a second handle (as a second node would).
    pub location: Location,
    _dir: Option<TempDir>,
    _cluster: Option<PgCluster>,
}

impl TestStore {
    /// A fresh, migrated store of the given dialect.
    pub async fn new(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Sqlite => {
                let dir = TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let location = Location::Sqlite(dir.path().join("creddy.db"));
                let store = open(&location).await;
                Self {
                    store,
                    location,
                    _dir: Some(dir),
                    _cluster: None,
                }
            }
            Dialect::Postgres => {
                let cluster = tokio::task::spawn_blocking(PgCluster::start)
                    .await
                    .expect("the blocking task ends");
                let location = Location::Postgres(cluster.url());
                let store = open(&location).await;
                Self {
                    store,
                    location,
                    _dir: None,
                    _cluster: Some(cluster),
                }
            }
        }
    }
}

async fn open(location: &Location) -> Store {
    Store::open(location.clone())
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", location.describe()))
}

impl TestStore {
    /// Runs raw SQL against the database behind the store, as an operator (or an attacker)
    /// with direct access could; for tests that tamper with or break the database.
    pub async fn execute_raw(&self, sql: &str) {
        execute_raw(&self.location, sql).await;
    }

    /// SQL that makes every insert into the audit trail fail, for this dialect.
    pub fn break_audit_sql(&self) -> &'static str {
        break_audit_sql(&self.location)
    }
}

/// Runs `$body` with `$pool` bound to a fresh pool on the database at `$location` (outside
/// the store), then closes the pool; the body is written once for both dialects.
macro_rules! on_raw_pool {
    ($location:expr, |$pool:ident| $body:expr) => {
        match $location {
            Location::Sqlite(path) => {
                let $pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .expect("the connection is made");
                let result = $body;
                $pool.close().await;
                result
            }
            Location::Postgres(url) => {
                let $pool = sqlx::PgPool::connect(url)
                    .await
                    .expect("the connection is made");
                let result = $body;
                $pool.close().await;
                result
            }
        }
    };
}

/// Runs raw SQL against the database at `location`, outside the store (tampering tests).
pub async fn execute_raw(location: &Location, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let result = on_raw_pool!(location, |pool| sqlx::raw_sql(sql)
        .execute(&pool)
        .await
        .map(|_| ()));
    result.unwrap_or_else(|e| panic!("raw SQL failed: {e}"));
}

/// The first text column of the first row of `sql` at `location`, read outside the store.
pub async fn query_raw_text(location: &Location, sql: &str) -> Option<String> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let result = on_raw_pool!(location, |pool| sqlx::query_scalar::<_, Option<String>>(
        sql
    )
    .fetch_optional(&pool)
    .await);
    result
        .unwrap_or_else(|e| panic!("raw SQL failed: {e}"))
        .flatten()
}

/// SQL that makes every insert into the audit trail fail, for the dialect of `location`.
pub fn break_audit_sql(location: &Location) -> &'static str {
    match location {
        Location::Sqlite(_) => {
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit disk full'); END;"
        }
        Location::Postgres(_) => {
            "CREATE FUNCTION fail_audit() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'audit disk full'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION fail_audit();"
        }
    }
}

/// Every row of every table of the PostgreSQL database at `url` as text, one row a line: what
/// someone reading the database (or its files) could see, for tests of secrets at rest.
pub async fn postgres_rows_as_text(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("listing tables: {e}"));
    let mut text = String::new();
    for table in tables {
        let sql = sqlx::AssertSqlSafe(format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t"));
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        for row in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    pool.close().await;
    text
}

//! The test kit: real parts for tests.
//!
//! - [`postgres::PgCluster`]: a private PostgreSQL started from the `initdb`/`pg_ctl`
//!   binaries in a temporary directory on a free port, removed when dropped.
//! - [`store`]: fresh stores of either dialect for the conformance suite.
//! - [`github`]: a GitHub stand-in (Apps, installation tokens, repository contents), and
//!   [`git_front`]: git over HTTPS for its repositories, accepting only its tokens.
//! - [`server`]: a creddy server on `127.0.0.1:0`, in process with a [`ManualClock`], or as
//!   the real binary.
//!
//! [`ManualClock`]: creddy_core::ManualClock

pub mod git_front;
pub mod github;
pub mod http;
pub mod issuer;
pub mod plugins;
pub mod postgres;
pub mod pty;
pub mod registry;
pub mod server;
pub mod store;

/// Instantiates each named async test function for SQLite and for PostgreSQL:
/// `dialects!(setup => test_a, test_b)` makes `sqlite::test_a`, `postgres::test_a`, … which
/// call `test_a(setup(dialect).await)`; `dialects!(group: setup => …)` puts them in `group`.
#[macro_export]
macro_rules! dialects {
    // `dialects!(group: setup => …)`: the same inside `mod group`, so that one file can use
    // several setups (`group::sqlite::test_a`, …).
    ($group:ident : $setup:path => $($test:ident),* $(,)?) => {
        mod $group {
            #[allow(unused_imports)]
            use super::*;
            $crate::dialects!($setup => $($test),*);
        }
    };
    ($setup:path => $($test:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(#[tokio::test]
            async fn $test() {
                super::$test($setup($crate::store::Dialect::Sqlite).await).await
            })*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(#[tokio::test]
            async fn $test() {
                super::$test($setup($crate::store::Dialect::Postgres).await).await
            })*
        }
    };
}

//! The test kit: real parts for tests.
//!
//! - [`postgres::PgCluster`]: a private PostgreSQL started from the `initdb`/`pg_ctl`
//!   binaries in a temporary directory on a free port, removed when dropped.
//! - [`store`]: fresh stores of either dialect for the conformance suite.
//! - [`server`]: a creddy server on `127.0.0.1:0`, in process with a [`ManualClock`], or as
//!   the real binary.
//!
//! [`ManualClock`]: creddy_core::ManualClock

pub mod postgres;
pub mod server;
pub mod store;

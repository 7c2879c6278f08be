//! The store's conformance suite: every test runs against SQLite and against a private
//! PostgreSQL, so the two dialects cannot drift apart.

mod conformance;

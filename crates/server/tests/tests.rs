//! The server's integration tests: real servers on `127.0.0.1:0`, real SQLite files and a
//! private PostgreSQL, each test run against both stores.

mod agents;
mod attacks;
mod audit;
mod boundary;
mod edge;
mod enroll;
mod federation;
mod lifecycle;
mod oidc;
mod openapi;
mod vend;

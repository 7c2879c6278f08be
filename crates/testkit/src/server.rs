//! Servers for tests (filled in below).

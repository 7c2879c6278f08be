//! Proxy mode (§20): an agent holds a `ckp_` placeholder instead of a credential and points
//! its SDK at `/v1/proxy/{backend}/…`; creddy checks each call against the lease and forwards
//! it upstream with the real credential injected. (Not to be confused with
//! [`crate::proxies`], the reverse proxies in front of creddy whose forwarded addresses are
//! trusted.)
//!
//! - [`path`]: the upstream URL built only from validated segments, its origin and prefix
//!   checked after building.
//! - [`headers`]: what crosses in each direction: hop-by-hop, `Connection`-listed,
//!   credential and forwarding headers dropped, the real credential injected last.

pub mod headers;
pub mod path;

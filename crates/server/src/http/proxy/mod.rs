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
//! - [`rewrite`]: toolbox and analytics URLs in answers turned into creddy routes (toolbox
//!   hosts only from an allow-list), the injected credential redacted from text answers.
//!
//! Not yet wired to a route: the route, placeholder leases and the backend's `proxy`
//! settings come next (issue #18). It lives in the HTTP front end: what crosses is HTTP.

pub mod headers;
pub mod path;
pub mod rewrite;

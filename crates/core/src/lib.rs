//! creddy's domain, free of IO.
//!
//! Everything here is pure: identifiers and secrets as newtypes, the scope grammar and its one
//! matcher, the duration syntax, name rules, the clock abstraction and the audit event types.
//! The store, the server and the CLI all build on these types so that a rule is written once.
//!
//! **Invariant: deny by default.** [`scope::Grants::covers`] answers "no" unless a grant
//! explicitly covers the requested scope; there is no other matcher in the project.

pub mod agent;
pub mod audit;
pub mod backend;
pub mod clock;
pub mod closed_set;
pub mod duration;
pub mod enrollment;
pub mod ids;
pub mod lease;
pub mod names;
pub mod origin;
pub mod policy;
pub mod scope;
pub mod secret;
pub mod signing;
pub mod timestamp;
pub mod trust;
pub mod ttl;

pub use clock::{Clock, ManualClock, SystemClock};
pub use duration::Duration;
pub use timestamp::Timestamp;

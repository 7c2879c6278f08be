//! A stand-in for Daytona's API, for tests and the demo: the only stand-in in creddy's tests,
//! for the one part that cannot be reached from here (Daytona's cloud).
//!
//! It follows `shared/reference/daytona-api/`: paths under `/api`, `POST /api-keys` answering
//! 201 and `POST /sandbox` 200, masked key values in lists, Daytona's error envelope
//! `{path, timestamp, statusCode, error, message}` with the messages Daytona uses, and the
//! rules the README there describes: a key is refused after its `expiresAt`, an organisation
//! header that does not match the key's organisation is `Invalid authentication context`,
//! creating keys needs `manage:api_keys` and may grant only permissions the caller holds,
//! creating sandboxes needs `write:sandboxes` and deleting them `delete:sandboxes` (reading
//! is implicit). State is kept in a JSON file when one is given. Faults (latency, 5xx, 429
//! with `Retry-After`, failing deletes, down behind a gateway) are switched with
//! `POST /_standin/faults`; a Daytona that refuses connections is a stopped stand-in.

mod api;
mod state;

pub use api::{Faults, router};
pub use state::{Key, State};

/// What a master key needs so creddy can delegate its default permissions: creating and
/// deleting keys, and every permission of the plain `daytona` scope.
pub const MASTER_PERMISSIONS: [&str; 9] = [
    "manage:api_keys",
    "write:sandboxes",
    "delete:sandboxes",
    "write:snapshots",
    "delete:snapshots",
    "write:volumes",
    "delete:volumes",
    "write:registries",
    "delete:registries",
];

/// The body of `POST /_standin/seed` for a master key of `organization_id` holding
/// [`MASTER_PERMISSIONS`].
pub fn master_seed(value: &str, organization_id: &str) -> serde_json::Value {
    serde_json::json!({"name": "master", "value": value, "permissions": MASTER_PERMISSIONS, "organization_id": organization_id})
}

/// Every permission Daytona's hosted API knows (the `CreateApiKey` enum of v0.205).
pub const PERMISSIONS: [&str; 21] = [
    "write:registries",
    "delete:registries",
    "write:snapshots",
    "delete:snapshots",
    "write:sandboxes",
    "delete:sandboxes",
    "read:volumes",
    "write:volumes",
    "delete:volumes",
    "write:regions",
    "delete:regions",
    "read:runners",
    "write:runners",
    "delete:runners",
    "read:audit_logs",
    "manage:api_keys",
    "manage:secrets",
    "read:limits",
    "manage:sso",
    "read:billing",
    "manage:billing",
];

//! Enrollment and scope requests: `POST /v1/enroll`, `GET /v1/enroll/status`, the admin's
//! `/v1/admin/pending…`, and an agent's `POST /v1/request`, `GET /v1/request/{id}`.
//!
//! Answers that depend on the request's fate carry it in `status`, one shape per status.

use creddy_core::Timestamp;
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::agents::OidcClient;

/// `POST /v1/enroll`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct EnrollRequest {
    /// The agent's name.
    pub name: String,
    /// What it asks for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// An admin token (`cat_…` of an agent holding `admin:enrollments:write`): the request
    /// is approved at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub admin_token: Option<Secret<String>>,
}

/// The fate of an enrollment, as `POST /v1/enroll` and `GET /v1/enroll/status` answer it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EnrollAnswer {
    /// Waiting for an admin or a policy; poll `GET /v1/enroll/status` with the secret.
    Pending(PendingEnrollment),
    /// Approved: the agent's credentials, handed out once.
    Approved(Pickup),
    /// Refused.
    Rejected(Refusal),
    /// Not decided in time.
    Expired(RequestRef),
}

/// A waiting enrollment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PendingEnrollment {
    /// The request, `enr_<ULID>`.
    pub id: String,
    /// The agent's name.
    pub name: String,
    /// The poll secret (`ces_…`), given only when the request is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Secret<String>>,
    /// The decision deadline.
    pub expires_at: Timestamp,
}

/// An approved enrollment's credentials, handed out once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Pickup {
    /// The request, `enr_<ULID>`.
    pub id: String,
    /// The agent's name.
    pub name: String,
    /// The agent, `ag_<ULID>`.
    pub agent_id: String,
    /// Its vend token (`cat_…`).
    #[schema(value_type = String)]
    pub token: Secret<String>,
    /// What it may ask for.
    pub scopes: Vec<String>,
    /// Its OIDC client credentials.
    pub oidc: OidcClient,
    /// The server's public URL.
    pub server_url: String,
    /// When the agent ends.
    pub expires_at: Option<Timestamp>,
    /// The policy that admitted it at once, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A refused request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Refusal {
    /// The request, `enr_<ULID>`.
    pub id: String,
    /// Why.
    pub reason: Option<String>,
}

/// A request named by its id alone (one not decided in time, or waiting).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestRef {
    /// The request, `enr_<ULID>`.
    pub id: String,
}

/// `GET /v1/enroll/status` query: the compatibility form of the poll secret (prefer the
/// `X-Creddy-Enrollment-Secret` header).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The poll secret.
    pub secret: Option<String>,
}

/// A request waiting for a decision, as `GET /v1/admin/pending` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingRequest {
    /// `enr_<ULID>`.
    pub id: String,
    /// An enrollment or an amendment.
    #[serde(rename = "type")]
    pub kind: EnrollmentKind,
    /// The agent's name.
    pub name: String,
    /// The agent, for an amendment.
    pub agent_id: Option<String>,
    /// What is asked for.
    pub scopes: Vec<String>,
    /// Its status.
    pub status: EnrollmentStatus,
    /// The policy that matched it.
    pub policy: Option<String>,
    /// Why it was decided so.
    pub reason: Option<String>,
    /// The address it came from.
    pub ip: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
    /// The decision deadline.
    pub expires_at: Timestamp,
}

/// `POST /v1/admin/pending/{id}/approve` (optional body).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ApproveRequest {
    /// Grant these scopes instead of those asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// An approval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    /// The request.
    pub id: String,
    /// An enrollment or an amendment.
    #[serde(rename = "type")]
    pub kind: EnrollmentKind,
    /// The agent created or amended.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes now.
    pub scopes: Vec<String>,
    /// Always true.
    pub approved: bool,
}

/// `POST /v1/admin/pending/{id}/reject` (optional body).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RejectRequest {
    /// Why (shown to the agent and audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/request`: an agent asks for more scopes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AmendRequest {
    /// The scopes to add.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The fate of a scope request when it is made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AmendAnswer {
    /// Waiting for an admin; poll `GET /v1/request/{id}`.
    Pending(RequestRef),
    /// A policy approved it.
    Approved(Amended),
    /// A policy refused it.
    Rejected(Refusal),
}

/// An approved scope request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Amended {
    /// The request.
    pub id: String,
    /// The agent's scopes now.
    pub scopes: Vec<String>,
}

/// `GET /v1/request/{id}`: one of the caller's scope requests.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AmendmentStatus {
    /// The request.
    pub id: String,
    /// Its status.
    pub status: EnrollmentStatus,
    /// What was asked for.
    pub scopes: Vec<String>,
    /// Why it was decided so.
    pub reason: Option<String>,
}

//! Revoking one lease's credential through its backend's plugin and recording the outcome.
//!
//! Used by backend removal (drain) and by the reaper at expiry. This is the simple path:
//! one attempt per call; a failed attempt leaves the lease open so that the next sweep tries
//! again. **No lease disappears silently**: a lease only ends `revoked` when the upstream
//! confirmed the deletion or had nothing to delete.

use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_plugin::protocol::AgentRef;
use creddy_store::RevocableLease;
use serde_json::json;

use crate::error::ApiError;
use crate::http::RequestContext;
use crate::state::AppState;
use crate::vend::external_id_context;

/// Revokes `lease` upstream and marks it `revoked` with a `credential.revoked` event; a
/// `pending` lease (an intent whose mint had an unknown outcome) is reconciled instead: once
/// the upstream confirms nothing of it remains, it ends `failed` with `credential.failed`.
/// `Ok(false)` means the upstream could not be asked or refused; the lease stays open.
pub(crate) async fn revoke(
    state: &AppState,
    lease: &RevocableLease,
    actor: Actor,
    reason: &str,
    context: Option<&RequestContext>,
) -> Result<bool, ApiError> {
    let live = state.backends().get(&lease.backend);
    let Some(process) = live.as_ref().and_then(|l| l.process.as_ref().ok()) else {
        tracing::warn!(lease = %lease.id, backend = %lease.backend, "cannot revoke: the backend's plugin is not running");
        return Ok(false);
    };
    let external_id = lease
        .sealed_external_id
        .as_deref()
        .and_then(|s| state.sealer().open(&external_id_context(&lease.id), s).ok())
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    let agent = AgentRef {
        id: lease.agent_id.clone(),
        name: lease.agent_name.clone(),
        scopes: vec![],
    };
    let result = match process
        .revoke_credential(external_id, &lease.id, agent)
        .await
    {
        Ok(result) => result,
        Err(error) => {
            tracing::warn!(lease = %lease.id, backend = %lease.backend, %error, "revocation attempt failed; it will be retried");
            return Ok(false);
        }
    };
    let (ip, request_id) = context
        .map(|c| (c.ip.clone(), c.request_id.clone()))
        .unwrap_or_default();
    let (action, to_state, reason) = if lease.state == "pending" {
        (Action::CredentialFailed, "failed", "reconciled")
    } else {
        (Action::CredentialRevoked, "revoked", reason)
    };
    let event = AuditEvent::new(action, actor, state.clock().now())
        .about_agent(&lease.agent_id, &lease.agent_name)
        .about_lease(&lease.backend, Some(&lease.id))
        .from_request(ip, request_id)
        .with_details(json!({"reason": reason, "already_gone": result.already_gone}));
    state
        .store()
        .settle_lease(&lease.id, to_state, state.clock().now(), &event)
        .await?;
    tracing::info!(lease = %lease.id, backend = %lease.backend, reason, to_state, "lease settled");
    Ok(true)
}

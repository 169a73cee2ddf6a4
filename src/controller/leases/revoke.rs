//! Revoking leases: superseded ones after their grace period, and every one of a VaultSecret
//! that is deleted with `spec.refresh.revokeOnDelete` (through a finalizer).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use vaultrs::client::VaultClient;

use crate::api::{PendingRevocation, VaultSecret, VaultSecretStatus};
use crate::controller::Context;
use crate::controller::error::{Error, Result};
use crate::events::EventType;
use crate::reasons::event;
use crate::vault;

/// Finalizer that holds a deleted VaultSecret until its leases are revoked.
pub const FINALIZER: &str = "vaultsync.dev/revoke-leases";

/// How long a failed revocation of a superseded lease waits before the next attempt.
const RETRY_REVOKE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Attempts at revoking a deleted VaultSecret's leases before letting it go anyway.
pub const DELETE_ATTEMPTS: u32 = 5;

/// Adds or removes the finalizer so that it is present exactly when `want`.
pub async fn set_finalizer(vs: &VaultSecret, ctx: &Context, want: bool) -> Result<()> {
    let finalizers = vs.finalizers();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    if has == want {
        return Ok(());
    }
    let mut new: Vec<&str> = finalizers
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER)
        .collect();
    if want {
        new.push(FINALIZER);
    }
    // The resourceVersion makes the patch fail on a concurrent change instead of losing it.
    let patch = json!({"metadata": {"finalizers": new, "resourceVersion": vs.resource_version()}});
    ctx.vs_api(vs)
        .patch(&vs.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("update finalizers"))?;
    Ok(())
}

/// Revokes the pending revocations that are due at `now`; drops those that expired meanwhile.
/// Returns whether `pending` changed.
pub async fn revoke_due(
    client: &VaultClient,
    pending: &mut Vec<PendingRevocation>,
    now: Timestamp,
    ctx: &Context,
) -> bool {
    let before = pending.len();
    let mut kept = Vec::with_capacity(pending.len());
    for entry in pending.drain(..) {
        if entry.revoke_after.0 > now {
            kept.push(entry);
            continue;
        }
        match revoke(client, &entry.lease_id, ctx).await {
            Ok(()) => tracing::info!(
                source = entry.source,
                lease = entry.lease_id,
                "revoked superseded lease"
            ),
            Err(e) if entry.expiry.0 <= now => {
                tracing::info!(lease = entry.lease_id, error = %e, "superseded lease expired before it could be revoked")
            }
            Err(e) => {
                tracing::warn!(lease = entry.lease_id, error = %e, "could not revoke superseded lease; will retry");
                // Not again at once (a policy without sys/leases/revoke would fail every time).
                let retry = now.saturating_add(RETRY_REVOKE).unwrap_or(now).min(entry.expiry.0);
                kept.push(PendingRevocation {
                    revoke_after: Time(retry),
                    ..entry
                });
            }
        }
    }
    *pending = kept;
    pending.len() != before
}

async fn revoke(client: &VaultClient, lease_id: &str, ctx: &Context) -> vault::Result<()> {
    let revoked = vault::observe(&ctx.metrics, "revoke", vault::lease::revoke(client, lease_id)).await;
    let result = if revoked.is_ok() { "success" } else { "failure" };
    ctx.metrics.lease_revocations.with_label_values(&[result]).inc();
    revoked
}

/// The earliest lease deadline of `status`: a renewal, a rotation or a revocation.
pub fn due(status: &VaultSecretStatus) -> Option<Timestamp> {
    let actions = status
        .sources
        .iter()
        .filter_map(|s| s.lease.as_ref())
        .map(|l| l.next_action_time.0);
    let revocations = status.pending_revocations.iter().map(|p| p.revoke_after.0);
    actions.chain(revocations).min()
}

/// Every lease `status` names that can be revoked (certificates cannot).
fn all_leases(status: &VaultSecretStatus) -> Vec<String> {
    let current = status
        .sources
        .iter()
        .filter_map(|s| s.lease.as_ref())
        .map(|l| l.id.clone());
    let pending = status.pending_revocations.iter().map(|p| p.lease_id.clone());
    current.chain(pending).filter(|id| !id.starts_with("serial:")).collect()
}

/// Revokes every lease of a deleted VaultSecret with `client`, then releases it. After
/// [`DELETE_ATTEMPTS`] failed attempts (`attempt` counts from 1) it is released anyway with a
/// Warning Event naming the leases left to expire.
pub async fn finalize(
    vs: &VaultSecret,
    ctx: &Context,
    client: std::result::Result<&VaultClient, &Error>,
    attempt: u32,
) -> Result<()> {
    let status = vs.status.clone().unwrap_or_default();
    let leases = all_leases(&status);
    let failed = match client {
        Ok(client) => {
            let mut failed = Vec::new();
            for lease in &leases {
                if let Err(e) = revoke(client, lease, ctx).await {
                    tracing::warn!(lease, error = %e, "could not revoke lease of deleted VaultSecret");
                    failed.push(lease.clone());
                }
            }
            failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach Vault to revoke the leases of a deleted VaultSecret");
            leases.clone()
        }
    };
    if failed.is_empty() {
        if !leases.is_empty() {
            let note = format!("Revoked {} lease(s) on deletion", leases.len());
            ctx.publish(vs, EventType::Normal, event::LEASES_REVOKED, note).await;
        }
    } else if attempt < DELETE_ATTEMPTS {
        return Err(Error::LeasesNotRevoked(format!(
            "{} lease(s) could not be revoked yet (attempt {attempt} of {DELETE_ATTEMPTS})",
            failed.len()
        )));
    } else {
        // The Event may not land (a terminating namespace refuses new ones): the log and the
        // metric always do.
        tracing::error!(
            leases = failed.join(", "),
            "abandoned {} lease(s) of deleted VaultSecret {}/{} after {attempt} attempts to revoke them; they stay valid until they expire",
            failed.len(),
            vs.namespace().unwrap_or_default(),
            vs.name_any()
        );
        ctx.metrics
            .lease_revocations
            .with_label_values(&["abandoned"])
            .inc_by(u64::try_from(failed.len()).unwrap_or(u64::MAX));
        let note = format!(
            "Gave up revoking lease(s) {} after {attempt} attempts; they stay valid until they expire",
            failed.join(", ")
        );
        ctx.publish(vs, EventType::Warning, event::LEASES_NOT_REVOKED, note)
            .await;
    }
    if vs.meta().deletion_timestamp.is_some() {
        set_finalizer(vs, ctx, false).await?;
    }
    Ok(())
}

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

use super::owed::{self, Owed};

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
            Ok(()) => {
                crate::crashpoint::at(crate::crashpoint::Step::DuringRevoke);
                tracing::info!(
                    source = entry.source,
                    lease = entry.lease_id,
                    "revoked superseded lease"
                );
            }
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

pub(super) async fn revoke(client: &VaultClient, lease_id: &str, ctx: &Context) -> vault::Result<()> {
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

/// Every lease `status` names that can be revoked (certificates cannot), with the token that
/// issued it and its expiry.
fn all_leases(status: &VaultSecretStatus) -> Vec<(String, Option<String>, Timestamp)> {
    let current = status
        .sources
        .iter()
        .filter_map(|s| s.lease.as_ref())
        .map(|l| (l.id.clone(), l.token_ref.clone(), l.expiry.0));
    let pending = status
        .pending_revocations
        .iter()
        .map(|p| (p.lease_id.clone(), p.token_ref.clone(), p.expiry.0));
    current
        .chain(pending)
        .filter(|(id, _, _)| !id.starts_with("serial:"))
        .collect()
}

/// Revokes every lease of a deleted VaultSecret with `client`, then releases it. Leases Vault
/// does not answer for (sealed, down, rate-limiting) become owed revocations, kept in the
/// operator's namespace and retried until Vault answers ([`super::owed`]): the deletion does not
/// wait for Vault. Leases that cannot be revoked at all are abandoned (logged, counted, and a
/// Warning Event). Only when the owed revocations cannot be recorded is the deletion retried, and
/// after [`DELETE_ATTEMPTS`] (`attempt` counts from 1) released anyway.
pub async fn finalize(
    vs: &VaultSecret,
    ctx: &Context,
    place: std::result::Result<&vault::Connection, &Error>,
    client: std::result::Result<&VaultClient, &str>,
    attempt: u32,
) -> Result<()> {
    let status = vs.status.clone().unwrap_or_default();
    let leases = all_leases(&status);
    let object = format!("{}/{}", vs.namespace().unwrap_or_default(), vs.name_any());
    // Leases to retry later, and leases given up with the reason.
    let mut later = Vec::new();
    let mut denied: Vec<(String, Timestamp, String)> = Vec::new();
    for (lease, token, expiry) in leases.iter().cloned() {
        // Err((whether to try again later, why)).
        let outcome = match client {
            Ok(client) => revoke(client, &lease, ctx)
                .await
                .map_err(|e| (e.is_outage(), e.to_string())),
            // Without the VaultSecret's identity (its ServiceAccount may be gone with its
            // namespace) the lease is revoked later, with the token that issued it.
            Err(e) => Err((true, e.to_string())),
        };
        match outcome {
            Ok(()) => {}
            Err((true, why)) => later.push((lease, token, expiry, why)),
            Err((false, why)) => denied.push((lease, expiry, why)),
        }
    }
    if !later.is_empty() {
        match &place {
            Ok(conn) => {
                // The CA the VaultSecret named, so the retry trusts the server as the sync did.
                let ca = conn
                    .ca_pem
                    .as_deref()
                    .filter(|pem| ctx.settings.vault_ca_pem.as_deref() != Some(*pem))
                    .map(|pem| String::from_utf8_lossy(pem).into_owned());
                let owed: Vec<Owed> = later
                    .iter()
                    .map(|(lease, token, expiry, _)| Owed {
                        lease: lease.clone(),
                        address: conn.address.to_string(),
                        namespace: conn.namespace.clone(),
                        ca: ca.clone(),
                        token: token.clone().unwrap_or_default(),
                        expiry: *expiry,
                        object: object.clone(),
                    })
                    .collect();
                if let Err(e) = ctx.owed.record(owed).await {
                    if attempt < DELETE_ATTEMPTS {
                        return Err(Error::LeasesNotRevoked(format!(
                            "{} lease(s) could not be revoked, nor recorded for later: {} (attempt {attempt} of {DELETE_ATTEMPTS})",
                            later.len(),
                            crate::kube_error_message(&e)
                        )));
                    }
                    denied.extend(
                        later
                            .drain(..)
                            .map(|(l, _, x, why)| (l, x, format!("{why}; not recorded for later"))),
                    );
                }
            }
            Err(e) => denied.extend(later.drain(..).map(|(l, _, x, _)| (l, x, e.to_string()))),
        }
    }
    if !later.is_empty() {
        let (why, ids): (Vec<_>, Vec<_>) = later.iter().map(|(l, _, _, why)| (why.clone(), l.clone())).unzip();
        tracing::warn!(
            leases = ids.join(", "),
            "{} lease(s) of deleted VaultSecret {object} not revoked yet ({}); owed revocations are kept in Secret {}/{} and retried until Vault answers",
            ids.len(),
            why[0],
            ctx.settings.namespace,
            owed::SECRET_NAME
        );
        ctx.metrics
            .lease_revocations
            .with_label_values(&["deferred"])
            .inc_by(u64::try_from(ids.len()).unwrap_or(u64::MAX));
        let note = format!(
            "Vault did not answer; {} lease(s) will be revoked when it does (kept in Secret {}/{})",
            ids.len(),
            ctx.settings.namespace,
            owed::SECRET_NAME
        );
        ctx.publish(vs, EventType::Warning, event::LEASES_REVOCATION_DEFERRED, note)
            .await;
    }
    for (lease, expiry, why) in &denied {
        owed::abandon(ctx, lease, &object, *expiry, why);
    }
    if !denied.is_empty() {
        let ids: Vec<&str> = denied.iter().map(|(l, _, _)| l.as_str()).collect();
        let note = format!(
            "Could not revoke lease(s) {} ({}); they stay valid until they expire",
            ids.join(", "),
            denied[0].2
        );
        ctx.publish(vs, EventType::Warning, event::LEASES_NOT_REVOKED, note)
            .await;
    }
    let revoked = leases.len() - later.len() - denied.len();
    if revoked > 0 {
        let note = format!("Revoked {revoked} lease(s) on deletion");
        ctx.publish(vs, EventType::Normal, event::LEASES_REVOKED, note).await;
    }
    if vs.meta().deletion_timestamp.is_some() {
        set_finalizer(vs, ctx, false).await?;
    }
    Ok(())
}

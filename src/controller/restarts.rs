//! The reconciler's side of workload restarts (`spec.rollout`): deciding that a sync changed the
//! content, asking [`crate::rollout`] to restart, and turning its reports into the
//! `RolloutRestart` condition and Events. A failed restart never fails the sync.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Resource, ResourceExt};

use super::{Context, status};
use crate::api::{ROLLOUT_RESTART, VaultSecret, VaultSecretStatus, parse_duration};
use crate::events::{Event, EventType};
use crate::reasons::event;
use crate::rollout::{self, Report, Request, Target};

/// `status.pendingRolloutHash` after a sync that found content `hash` in Secret `name`
/// (`existed`: whether the Secret was there before this sync).
pub fn pending_hash(
    vs: &VaultSecret,
    previous: &VaultSecretStatus,
    existed: bool,
    name: &str,
    hash: &str,
) -> Option<String> {
    let active = vs.spec.rollout.as_ref().is_some_and(|r| r.is_active());
    rollout::pending_after_sync(previous, existed, name, hash, active)
}

/// Runs before every reconcile: writes the outcome of finished restarts into the status, and
/// (re)asks for the restarts the status says are pending — after an operator restart too.
/// Returns `vs` with the status as it now is.
pub async fn before_sync(vs: Arc<VaultSecret>, ctx: &Context) -> Arc<VaultSecret> {
    let key = super::key_of(&vs);
    let mut vs = vs;
    let pending = vs.status.as_ref().and_then(|s| s.pending_rollout_hash.clone());
    if let Some(report) = ctx.rollouts.take_report(&key)
        && pending.as_deref() == Some(report.hash.as_str())
    {
        match apply_report(&vs, ctx, &report).await {
            Ok(updated) => vs = updated,
            Err(e) => {
                tracing::warn!(namespace = vs.namespace().unwrap_or_default(), name = vs.name_any(), error = %e, "could not record rollout restarts")
            }
        }
    }
    let status = vs.status.clone().unwrap_or_default();
    let spec = vs.spec.rollout.as_ref().filter(|r| r.is_active());
    match (status.pending_rollout_hash, status.secret_name, spec) {
        (Some(hash), Some(secret), Some(spec)) => {
            let debounce = spec.debounce.as_deref().and_then(|d| parse_duration(d).ok());
            ctx.rollouts.request(Request {
                owner: key,
                regarding: vs.object_ref(&()),
                target: Target {
                    namespace: vs.namespace().unwrap_or_default(),
                    secret,
                    hash,
                    spec: (**spec).clone(),
                    debounce: debounce.unwrap_or(ctx.settings.rollout_debounce),
                },
            });
        }
        (Some(_), _, _) => {
            // spec.rollout was removed or emptied: nothing is left to restart.
            ctx.rollouts.cancel(&key);
            let mut new = vs.status.clone().unwrap_or_default();
            new.pending_rollout_hash = None;
            match status::write_if_changed(&ctx.vs_api(&vs), &vs, new.clone()).await {
                Ok(_) => vs = with_status(&vs, new),
                Err(e) => tracing::warn!(name = vs.name_any(), error = %e, "could not clear the pending rollout"),
            }
        }
        (None, _, _) => ctx.rollouts.cancel(&key),
    }
    vs
}

/// Sets the `RolloutRestart` condition from `report`, clears the pending hash when every
/// workload has the content, and emits a Warning when restarts start failing (or fail anew).
async fn apply_report(vs: &VaultSecret, ctx: &Context, report: &Report) -> super::Result<Arc<VaultSecret>> {
    let summary = report.summary();
    let previous = vs.status.clone().unwrap_or_default();
    let before = previous.rollout_restart().map(|c| (c.status.clone(), c.reason.clone()));
    let mut new = previous;
    if report.succeeded() {
        new.pending_rollout_hash = None;
    }
    let new = status::with_condition(new, condition(vs, summary.ok, summary.reason, summary.message.clone()));
    let wrote = status::write_if_changed(&ctx.vs_api(vs), vs, new.clone()).await?;
    if !summary.ok && wrote && before != Some(("False".into(), summary.reason.into())) {
        let event = Event {
            type_: EventType::Warning,
            reason: summary.reason.into(),
            note: Some(summary.message),
            action: event::ROLLOUT_RESTART.into(),
            secondary: None,
        };
        ctx.recorder.publish(&event, &vs.object_ref(&())).await;
    }
    Ok(with_status(vs, new))
}

/// The `RolloutRestart` condition, keeping the transition time while the status stays the same.
fn condition(vs: &VaultSecret, ok: bool, reason: &str, message: String) -> Condition {
    status::condition(vs, ROLLOUT_RESTART, ok, reason, message)
}

fn with_status(vs: &VaultSecret, status: VaultSecretStatus) -> Arc<VaultSecret> {
    let mut vs = vs.clone();
    vs.status = Some(status);
    Arc::new(vs)
}

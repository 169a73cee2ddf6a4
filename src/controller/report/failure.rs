//! Reporting a failed sync: Ready=False with a static reason, a Warning Event when the reason is
//! new, and a retry with backoff. The Secret is never touched: the last good content stays.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::super::error::{Error, Result};
use super::super::tracker::Asked;
use super::super::{Context, leases, status};
use crate::api::{VaultSecret, VaultSecretStatus};
use crate::events::EventType;
use crate::reasons::Retry;
use crate::vault;

/// Sets Ready=False with `err`'s reason on top of `recorded` (a status the failed sync already
/// wrote) or the current status, and schedules the retry.
pub async fn report(
    vs: &VaultSecret,
    ctx: &Context,
    key: ObjectRef<VaultSecret>,
    err: Error,
    recorded: Option<VaultSecretStatus>,
) -> Result<Action> {
    let previous = recorded.unwrap_or_else(|| vs.status.clone().unwrap_or_default());
    let had_reason = previous.ready().map(|c| (c.status.clone(), c.reason.clone()));
    let mut message = err.to_string();
    if previous.secret_hash.is_some() {
        message.push_str("; the Secret keeps its last synced content");
    }
    tracing::info!(
        namespace = vs.namespace().unwrap_or_default(),
        name = vs.name_any(),
        reason = err.reason(),
        "sync failed: {message}"
    );
    let mut new = previous.clone();
    new.observed_generation = vs.metadata.generation;
    let new = status::with_condition(new, status::ready(vs, false, err.reason(), message.clone()));
    let wrote = status::write_if_changed(&ctx.vs_api(vs), vs, new).await?;
    if wrote && had_reason != Some(("False".into(), err.reason().into())) {
        ctx.publish(vs, EventType::Warning, err.reason(), message).await;
    }
    // The retry is the tracker's to hand out ([`crate::controller::tracker::Tracker::due`]).
    ctx.tracker.failed(key, Asked::of(vs), |failures| {
        let delay = match (err.retry(), &err) {
            (Retry::Slowly, _) => ctx.settings.backoff.max,
            // The server's limiter paces every request to it; this object's own backoff does not
            // grow, so it is served as soon as the server allows again.
            (_, Error::Vault(vault::Error::RateLimited { .. })) => ctx.settings.backoff.delay(1, &mut rand::rng()),
            _ => ctx.settings.backoff.delay(failures, &mut rand::rng()),
        };
        match &err {
            // Retry often enough to renew the lease before it expires.
            Error::Stale { expiry, .. } => {
                let left = leases::until(jiff::Timestamp::now(), *expiry);
                delay.min((left / 3).max(Duration::from_secs(1)))
            }
            _ => delay,
        }
    });
    Ok(Action::await_change())
}

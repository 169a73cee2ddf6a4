//! One reconcile: decide whether a sync is due, sync, report, and schedule the next one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::error::{Error, Result};
use super::packed::Packed;
use super::tracker::{Asked, Due};
use super::{Context, deletion, destination, failure, leases, restarts, schedule, sync};
use crate::api::{VaultSecret, parse_duration};
use crate::vault::kv::Age;

/// Reconciles one VaultSecret. Vault is read only when a sync is due: on the first reconcile, a
/// spec change, a change to the Secret made by someone else, a refresh deadline or a retry.
/// Every log line inside carries the VaultSecret's namespace and name, and so does every Vault
/// request (`X-Vaultsync-Object`, for Vault's audit log).
#[tracing::instrument(skip_all, fields(namespace = packed.meta().namespace.as_deref().unwrap_or_default(), name = packed.meta().name.as_deref().unwrap_or_default()))]
pub async fn reconcile(packed: Arc<Packed>, ctx: Arc<Context>) -> Result<Action> {
    let _turn = ctx.fair.started(&packed.key());
    let vs = Arc::new(packed.unpack()?);
    let object = format!("{}/{}", vs.namespace().unwrap_or_default(), vs.name_any());
    crate::vault::on_behalf_of(object, reconcile_as(vs, ctx)).await
}

async fn reconcile_as(vs: Arc<VaultSecret>, ctx: Arc<Context>) -> Result<Action> {
    if vs.meta().deletion_timestamp.is_some() {
        return deletion::finalize(&vs, &ctx).await;
    }
    let vs = restarts::before_sync(vs, &ctx).await;
    let key = super::key_of(&vs);
    let now = Instant::now();
    let seen = || {
        let ns = vs.namespace().unwrap_or_default();
        ctx.secrets.seen(&ns, &destination::destination_name(&vs))
    };
    let asked = Asked::of(&vs);
    // The tracker hands out the next sync when due ([`super::tracker::Tracker::due`]).
    let why = match ctx.tracker.not_due(&key, &asked, seen, now) {
        Ok(_) => return Ok(Action::await_change()),
        Err(why) => why,
    };
    tracing::debug!(why = why.as_str(), "sync due");
    let interval = match refresh_interval(&vs, ctx.settings.default_refresh) {
        Ok(interval) => interval,
        Err(e) => return failure::report(&vs, &ctx, key, e, None).await,
    };
    let started = Instant::now();
    let age = match why {
        _ if ctx.tracker.requested(&key, &asked) => Age::Fresh,
        Due::First => Age::First,
        _ => Age::Recent,
    };
    let synced = sync::sync(&vs, &ctx, age).await;
    match &synced {
        Ok(s) => {
            ctx.observe_success(&vs, started.elapsed());
            ctx.observe_expiry(&vs, s.expiry);
        }
        Err(f) => ctx.observe_failure(&vs, started.elapsed(), f.error.reason()),
    }
    match synced {
        Ok(synced) => {
            ctx.fair.logged_in(&vs);
            let mut delay = schedule::refresh_delay(interval, schedule::phase_seed(&vs), jiff::Timestamp::now());
            if let Some(deadline) = synced.lease_deadline {
                // A lease to renew or rotate, or a superseded one to revoke, before the refresh.
                delay = delay.min(leases::until(jiff::Timestamp::now(), deadline).max(Duration::from_secs(1)));
            }
            // `delay` counts from now, the end of the sync (the refresh grid point, or the lease's
            // deadline): the next sync is due then, not `delay` after this one started.
            ctx.tracker
                .succeeded(key, asked, synced.secret_version, Instant::now() + delay);
            Ok(Action::await_change())
        }
        Err(sync::Failed { error, recorded }) => failure::report(&vs, &ctx, key, error, recorded).await,
    }
}

/// Called when [`reconcile`] itself fails (the failure could not even be reported).
pub fn error_policy(packed: Arc<Packed>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = packed.namespace().unwrap_or_default(), name = packed.name_any(), reason = err.reason(), error = %err, "reconcile failed");
    let failures = ctx.tracker.failures(&packed.key()) + 1;
    Action::requeue(ctx.settings.backoff.delay(failures, &mut rand::rng()))
}

fn refresh_interval(vs: &VaultSecret, default: Duration) -> Result<Duration> {
    match &vs.spec.refresh.interval {
        None => Ok(default),
        Some(text) => {
            let interval =
                parse_duration(text).map_err(|e| Error::InvalidSpec(format!("spec.refresh.interval: {e}")))?;
            if interval < Duration::from_secs(10) {
                return Err(Error::InvalidSpec("spec.refresh.interval must be at least 10s".into()));
            }
            Ok(interval)
        }
    }
}

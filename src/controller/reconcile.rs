//! One reconcile: decide whether a sync is due, sync, report, and schedule the next one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::error::{Error, Result};
use super::identity;
use super::restarts;
use super::secret;
use super::{Context, connection, deletion, destination, failure, leases, schedule, sources, status, trust};
use crate::api::{VaultSecret, VaultSecretStatus, parse_duration};
use crate::events::EventType;
use crate::reasons::{self, event};
use crate::vault::auth::Resolved;
use crate::vault::{self, Connection, Outcome};

/// Reconciles one VaultSecret. Vault is read only when a sync is due: on the first reconcile, a
/// spec change, a change to the Secret made by someone else, a refresh deadline or a retry.
/// Every log line inside carries the VaultSecret's namespace and name.
#[tracing::instrument(skip_all, fields(namespace = vs.metadata.namespace.as_deref().unwrap_or_default(), name = vs.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(vs: Arc<VaultSecret>, ctx: Arc<Context>) -> Result<Action> {
    if vs.meta().deletion_timestamp.is_some() {
        return deletion::finalize(&vs, &ctx).await;
    }
    let vs = restarts::before_sync(vs, &ctx).await;
    let key = ObjectRef::from_obj(&*vs);
    let now = Instant::now();
    let seen = || {
        let ns = vs.namespace().unwrap_or_default();
        let secret = ctx.secrets.get(&ns, &secret::destination_name(&vs))?;
        secret.resource_version().map(str::to_owned)
    };
    if let Some(wait) = ctx.tracker.not_due(&key, vs.metadata.generation, seen, now) {
        return Ok(Action::requeue(wait));
    }
    let interval = match refresh_interval(&vs, ctx.settings.default_refresh) {
        Ok(interval) => interval,
        Err(e) => return failure::report(&vs, &ctx, key, e, None).await,
    };
    let started = Instant::now();
    let mut recorded = None;
    let synced = sync(&vs, &ctx, &mut recorded).await;
    match &synced {
        Ok(s) => {
            ctx.observe_success(&vs, started.elapsed());
            ctx.observe_expiry(&vs, s.expiry);
        }
        Err(e) => ctx.observe_failure(&vs, started.elapsed(), e.reason()),
    }
    match synced {
        Ok(synced) => {
            let mut delay = schedule::refresh_delay(interval, schedule::phase_seed(&vs), jiff::Timestamp::now());
            if let Some(deadline) = synced.lease_deadline {
                // A lease to renew or rotate, or a superseded one to revoke, before the refresh.
                delay = delay.min(leases::until(jiff::Timestamp::now(), deadline).max(Duration::from_secs(1)));
            }
            ctx.tracker
                .succeeded(key, vs.metadata.generation, synced.secret_version, now + delay);
            Ok(Action::requeue(delay))
        }
        Err(e) => failure::report(&vs, &ctx, key, e, recorded).await,
    }
}

/// Called when [`reconcile`] itself fails (the failure could not even be reported).
pub fn error_policy(vs: Arc<VaultSecret>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = vs.namespace().unwrap_or_default(), name = vs.name_any(), reason = err.reason(), error = %err, "reconcile failed");
    let failures = ctx.tracker.failures(&ObjectRef::from_obj(&*vs)) + 1;
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

/// What a successful sync reports to the scheduler.
struct Synced {
    /// The Secret's resourceVersion.
    secret_version: Option<String>,
    /// The earliest lease deadline (renewal, rotation, revocation).
    lease_deadline: Option<jiff::Timestamp>,
    /// When the earliest lease or certificate expires.
    expiry: Option<jiff::Timestamp>,
}

/// Reads the sources and makes the Secret match. A status written before the Secret (new
/// leases) is left in `recorded`, so a failure later in the sync reports on top of it.
async fn sync(vs: &VaultSecret, ctx: &Context, recorded: &mut Option<VaultSecretStatus>) -> Result<Synced> {
    let ns = vs.namespace().unwrap_or_default();
    templates_allowed(vs, ctx.settings.allow_templates)?;
    trust::check_spec(vs, &ctx.settings)?;
    // Before any lease is issued, so a deletion can never miss one; kept while replaced leases
    // wait for their revocation.
    let status = vs.status.as_ref();
    let leased = vs.spec.sources.iter().any(|s| s.is_leased())
        || status.is_some_and(|s| !s.pending_revocations.is_empty() || s.sources.iter().any(|s| s.lease.is_some()));
    leases::set_finalizer(vs, ctx, leased && vs.spec.refresh.revokes_on_delete()).await?;
    let conn = connection::resolve(vs, ctx).await?;
    let kube = identity::Kube::new(vs, ctx);
    let resolved = identity::resolve(vs, &kube).await?;
    let identity = &resolved.identity;
    if identity.is_operator() {
        trust::check_operator_sources(vs, &ctx.settings)?;
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut book = leases::Book::open(vs, &api).await?;
    let (handle, mut merged) = read_sources(vs, ctx, &conn, &resolved, &mut book).await?;
    for warning in book.take_warnings() {
        ctx.publish(vs, EventType::Warning, event::TOKEN_EXPIRES_BEFORE_LEASE, warning)
            .await;
    }
    let leases: Vec<_> = merged.sources.iter().filter_map(|s| s.lease.as_ref()).collect();
    if let Some(until) = leases.iter().map(|l| l.expiry.0).max() {
        // Vault revokes leases with the token that issued them: keep it alive as long as they live.
        let left = leases::until(jiff::Timestamp::now(), until);
        ctx.vault.hold(&conn, identity, Instant::now() + left).await;
    }
    let tokens = leases.iter().filter_map(|l| l.token_ref.clone()).collect();
    ctx.tracker.index_tokens(&ObjectRef::from_obj(vs), tokens);
    let previous = vs.status.clone().unwrap_or_default();
    let mut pending = previous.pending_revocations.clone();
    pending.extend(book.take_superseded());
    if book.is_dirty() {
        let status = VaultSecretStatus {
            sources: merged.sources.clone(),
            pending_revocations: pending.clone(),
            ..previous.clone()
        };
        if let Err(e) = book.record(vs, ctx, &api, status.clone()).await {
            book.abandon(&handle.client, ctx).await;
            return Err(e);
        }
        *recorded = Some(status);
    }
    let shaped = sources::shape(vs, &mut merged).await?;
    let desired = secret::desired(vs, shaped.data, &ctx.hash_key)?;
    let name = desired.secret.name_any();
    let key = ObjectRef::from_obj(vs);
    let last_version = ctx.tracker.secret_version(&key);
    let destination::Applied {
        secret_version,
        existed,
        unchanged,
    } = destination::apply(vs, ctx, &api, &desired, last_version.as_deref(), &shaped.env_skipped).await?;
    secret::remove_renamed(vs, &api, &name).await?;

    let previous = vs.status.clone().unwrap_or_default();
    let mut message = format!("Secret {name} is in sync with {} source(s)", merged.sources.len());
    if !merged.overridden.is_empty() {
        message.push_str(&format!("; duplicate keys: {}", merged.overridden.join(", ")));
    }
    let last_sync_time = match (unchanged, previous.last_sync_time.clone()) {
        (true, Some(t)) => Some(t),
        _ => Some(Time(jiff::Timestamp::now())),
    };
    let pending_rollout_hash = restarts::pending_hash(vs, &previous, existed, &name, &desired.data_hash);
    // Superseded leases go only once the Secret no longer holds them.
    leases::revoke_due(&handle.client, &mut pending, jiff::Timestamp::now(), ctx).await;
    let expiry = merged
        .sources
        .iter()
        .filter_map(|s| s.lease.as_ref())
        .map(|l| l.expiry.0)
        .min();
    let new = VaultSecretStatus {
        observed_generation: vs.metadata.generation,
        conditions: previous.conditions.clone(),
        last_sync_time,
        secret_name: Some(name),
        secret_hash: Some(desired.data_hash),
        sources: merged.sources,
        pending_rollout_hash,
        pending_revocations: pending,
    };
    let new = status::with_condition(new, status::ready(vs, true, reasons::SYNCED.name, message));
    let lease_deadline = leases::due(&new);
    status::write_if_changed(&ctx.vs_api(vs), vs, new).await?;
    Ok(Synced {
        secret_version,
        lease_deadline,
        expiry,
    })
}

/// Templates render only where the operator allows them (`--allow-templates`).
fn templates_allowed(vs: &VaultSecret, allowed: bool) -> Result<()> {
    if vs.spec.destination.templates.is_empty() || allowed {
        Ok(())
    } else {
        Err(Error::TemplatesDisabled)
    }
}

/// Reads the sources as `identity`. A 403 on a token that was cached (it may have been revoked)
/// drops it and retries once with a fresh login before reporting `PermissionDenied`. Leases
/// issued by a sync that then fails are revoked.
async fn read_sources(
    vs: &VaultSecret,
    ctx: &Context,
    conn: &Connection,
    login: &Resolved<'_, Error>,
    book: &mut leases::Book,
) -> Result<(vault::Handle, sources::Merged)> {
    let identity = &login.identity;
    let (handle, outcome) = ctx.vault.get(conn, identity, &login.credential).await?;
    let (handle, merged) = match sources::read_all(&handle, conn, &vs.spec.sources, book, ctx).await {
        Err(Error::Vault(vault::Error::PermissionDenied { .. })) if outcome != Outcome::LoggedIn => {
            book.abandon(&handle.client, ctx).await;
            ctx.vault.invalidate(conn, identity, &handle).await;
            let (handle, _) = ctx.vault.get(conn, identity, &login.credential).await?;
            let merged = sources::read_all(&handle, conn, &vs.spec.sources, book, ctx).await;
            (handle, merged)
        }
        merged => (handle, merged),
    };
    match merged {
        Ok(merged) => Ok((handle, merged)),
        Err(e) => {
            book.abandon(&handle.client, ctx).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_refused_unless_the_operator_allows_them() {
        let mut vs = VaultSecret::new(
            "t",
            serde_json::from_value(serde_json::json!({
                "sources": [{"kv": {"mount": "secret", "path": "p"}}],
                "destination": {"templates": {"URL": "{{ password }}"}}
            }))
            .unwrap(),
        );
        assert_eq!(templates_allowed(&vs, false).unwrap_err().reason(), "TemplatesDisabled");
        assert!(templates_allowed(&vs, true).is_ok());
        vs.spec.destination.templates.clear();
        assert!(templates_allowed(&vs, false).is_ok(), "no templates, nothing to refuse");
    }
}

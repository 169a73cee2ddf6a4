//! One sync, in named phases that hand each other values: resolve (checks, connection,
//! identity) → read (every source) → record (new leases in the status before any Secret holds
//! them) → apply (shape the data and write the Secret) → report (revoke what is superseded, write
//! Ready=True). A failure carries the status the sync already recorded, so it is reported on top.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;

use super::error::{Error, Result};
use super::identity::{self, Kube};
use super::{Context, connection, destination, leases, restarts, sources, status, trust};
use crate::api::{PendingRevocation, VaultSecret, VaultSecretStatus};
use crate::events::EventType;
use crate::reasons::{self, event};
use crate::vault::auth::Resolved;
use crate::vault::kv::Age;
use crate::vault::{self, Connection, Outcome};

/// What a successful sync reports to the scheduler.
pub struct Synced {
    /// The Secret's resourceVersion.
    pub secret_version: Option<String>,
    /// The earliest lease deadline (renewal, rotation, revocation).
    pub lease_deadline: Option<jiff::Timestamp>,
    /// When the earliest lease or certificate expires.
    pub expiry: Option<jiff::Timestamp>,
}

/// A failed sync, with the status it had already written (new leases), if any.
pub struct Failed {
    pub error: Error,
    pub recorded: Option<VaultSecretStatus>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed { error, recorded: None }
    }
}

/// Reads the sources and makes the Secret and the status match.
/// `age`: which earlier identical KV read may serve it — none when someone asked for this sync
/// (`vaultsync.dev/sync-requested`): a read that completed before they asked may miss their change.
pub async fn sync(vs: &VaultSecret, ctx: &Context, age: Age) -> Result<Synced, Failed> {
    let previous = vs.status.clone().unwrap_or_default();
    let kube = Kube::new(vs, ctx);
    let target = resolve(vs, ctx, &kube).await?;
    let mut read = read(vs, ctx, &target, age).await?;
    let Recorded { pending, written } = record(vs, ctx, &target, &mut read, &previous).await?;
    let on_top = |error| Failed {
        error,
        recorded: written.clone(),
    };
    let applied = apply(vs, ctx, &target, &mut read).await.map_err(on_top)?;
    report(vs, ctx, read, applied, pending, &previous).await.map_err(on_top)
}

/// Where and as whom a sync reads.
struct Target<'a> {
    conn: Connection,
    login: Resolved<'a, Error>,
    /// Secrets of the VaultSecret's namespace.
    secrets: Api<Secret>,
}

/// Checks what needs no request, sets the lease finalizer where leases may exist, and resolves
/// the connection and the identity.
async fn resolve<'a>(vs: &'a VaultSecret, ctx: &Context, kube: &'a Kube<'a>) -> Result<Target<'a>> {
    templates_allowed(vs, ctx.settings.allow_templates)?;
    trust::check_spec(vs, &ctx.settings)?;
    // Before any lease is issued, so a deletion can never miss one; kept while replaced leases
    // wait for their revocation.
    let status = vs.status.as_ref();
    let leased = vs.spec.sources.iter().any(|s| s.is_leased())
        || status.is_some_and(|s| !s.pending_revocations.is_empty() || s.sources.iter().any(|s| s.lease.is_some()));
    leases::set_finalizer(vs, ctx, leased && vs.spec.refresh.revokes_on_delete()).await?;
    let conn = connection::resolve(vs, ctx).await?;
    let login = identity::resolve(vs, kube).await?;
    if login.identity.is_operator() {
        trust::check_operator_sources(vs, &ctx.settings)?;
    }
    let secrets = Api::namespaced(ctx.client.clone(), &vs.namespace().unwrap_or_default());
    Ok(Target { conn, login, secrets })
}

/// What the sources gave, with the client that read them and the book of their leases.
struct Read {
    handle: vault::Handle,
    merged: sources::Merged,
    book: leases::Book,
}

/// Reads every source (leased ones through the book), and keeps the Vault token that issued
/// leases alive as long as they live.
async fn read(vs: &VaultSecret, ctx: &Context, target: &Target<'_>, age: Age) -> Result<Read> {
    let mut book = leases::Book::open(vs, &target.secrets).await?;
    let (handle, merged) = read_sources(vs, ctx, target, &mut book, age).await?;
    for warning in book.take_warnings() {
        ctx.publish(vs, EventType::Warning, event::TOKEN_EXPIRES_BEFORE_LEASE, warning)
            .await;
    }
    let leases: Vec<_> = merged.sources.iter().filter_map(|s| s.lease.as_ref()).collect();
    if let Some(until) = leases.iter().map(|l| l.expiry.0).max() {
        // Vault revokes leases with the token that issued them: keep it alive as long as they live.
        let left = leases::until(jiff::Timestamp::now(), until);
        ctx.vault
            .hold(&target.conn, &target.login.identity, Instant::now() + left)
            .await;
    }
    let tokens = leases.iter().filter_map(|l| l.token_ref.clone()).collect();
    ctx.tracker.index_tokens(&super::key_of(vs), tokens);
    Ok(Read { handle, merged, book })
}

/// What [`record`] leaves: the revocations owed, and the status it wrote (if it wrote one).
struct Recorded {
    pending: Vec<PendingRevocation>,
    written: Option<VaultSecretStatus>,
}

/// Writes new and replaced leases into the status before the Secret holds them, so that no lease
/// the operator issued is ever unknown to it; a failure revokes the ones this sync issued.
async fn record(
    vs: &VaultSecret,
    ctx: &Context,
    target: &Target<'_>,
    read: &mut Read,
    previous: &VaultSecretStatus,
) -> Result<Recorded> {
    let mut pending = previous.pending_revocations.clone();
    pending.extend(read.book.take_superseded());
    if !read.book.is_dirty() {
        return Ok(Recorded { pending, written: None });
    }
    let status = VaultSecretStatus {
        sources: read.merged.sources.clone(),
        pending_revocations: pending.clone(),
        ..previous.clone()
    };
    if let Err(e) = read.book.record(vs, ctx, &target.secrets, status.clone()).await {
        read.book.abandon(&read.handle.client, ctx).await;
        return Err(e);
    }
    crate::crashpoint::at(crate::crashpoint::Step::AfterStatus);
    Ok(Recorded {
        pending,
        written: Some(status),
    })
}

/// The Secret as written by [`apply`].
struct Applied {
    name: String,
    data_hash: String,
    written: destination::Applied,
}

/// Shapes the merged data (keys, templates) into the desired Secret and applies it; a Secret of
/// the VaultSecret's previous name is removed.
async fn apply(vs: &VaultSecret, ctx: &Context, target: &Target<'_>, read: &mut Read) -> Result<Applied> {
    let shaped = sources::shape(vs, &mut read.merged).await?;
    let desired = destination::desired(vs, shaped.data, &ctx.hash_key)?;
    let name = desired.secret.name_any();
    let last_version = ctx.tracker.secret_version(&super::key_of(vs));
    let written = destination::apply(
        vs,
        ctx,
        &target.secrets,
        &desired,
        last_version.as_deref(),
        &shaped.env_skipped,
    )
    .await?;
    if !written.unchanged {
        crate::crashpoint::at(crate::crashpoint::Step::AfterSecret);
    }
    destination::remove_renamed(vs, &target.secrets, &name).await?;
    Ok(Applied {
        name,
        data_hash: desired.data_hash,
        written,
    })
}

/// Revokes superseded leases the Secret no longer holds and writes the status with Ready=True
/// (only if it changed).
async fn report(
    vs: &VaultSecret,
    ctx: &Context,
    read: Read,
    applied: Applied,
    mut pending: Vec<PendingRevocation>,
    previous: &VaultSecretStatus,
) -> Result<Synced> {
    let Read { handle, merged, .. } = read;
    let Applied {
        name,
        data_hash,
        written,
    } = applied;
    let mut message = format!("Secret {name} is in sync with {} source(s)", merged.sources.len());
    if !merged.overridden.is_empty() {
        message.push_str(&format!("; duplicate keys: {}", merged.overridden.join(", ")));
    }
    let last_sync_time = match (written.unchanged, previous.last_sync_time.clone()) {
        (true, Some(t)) => Some(t),
        _ => Some(Time(jiff::Timestamp::now())),
    };
    let pending_rollout_hash = restarts::pending_hash(vs, previous, written.existed, &name, &data_hash);
    let restart_scheduled = pending_rollout_hash.is_some() && pending_rollout_hash != previous.pending_rollout_hash;
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
        secret_hash: Some(data_hash),
        sources: merged.sources,
        pending_rollout_hash,
        pending_revocations: pending,
    };
    let new = status::with_condition(new, status::ready(vs, true, reasons::SYNCED.name, message));
    let lease_deadline = leases::due(&new);
    status::write_if_changed(&ctx.vs_api(vs), vs, new).await?;
    if restart_scheduled {
        ctx.nudge_siblings(vs);
    }
    Ok(Synced {
        secret_version: written.secret_version,
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
    target: &Target<'_>,
    book: &mut leases::Book,
    age: Age,
) -> Result<(vault::Handle, sources::Merged)> {
    let (conn, login) = (&target.conn, &target.login);
    let identity = &login.identity;
    let (handle, outcome) = ctx.vault.get(conn, identity, &login.credential).await?;
    let hold = ctx.fair.hold(vs);
    let reads = (age, &hold);
    let (handle, merged) = match sources::read_all(&handle, conn, &vs.spec.sources, book, ctx, reads).await {
        Err(Error::Vault(vault::Error::PermissionDenied { .. })) if outcome != Outcome::LoggedIn => {
            book.abandon(&handle.client, ctx).await;
            ctx.vault.invalidate(conn, identity, &handle).await;
            let (handle, _) = ctx.vault.get(conn, identity, &login.credential).await?;
            let merged = sources::read_all(&handle, conn, &vs.spec.sources, book, ctx, reads).await;
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

//! Leased sources — dynamic credentials and PKI certificates: issued once, reused while valid
//! (across operator restarts, from [`cache`]), renewed at `spec.refresh.renewalPercent`, replaced
//! before they expire, and revoked after a grace period once superseded.
//!
//! Order of writes when new credentials are issued: the lease goes into the VaultSecret's status
//! first, then its credentials into the lease Secret, then the destination Secret. A crash at any
//! point leaves every lease recorded, so none is lost unrevoked.

mod kept;
pub mod owed;
mod plan;
mod request;
mod revoke;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use serde_json::Value;
use vaultrs::client::VaultClient;

pub use owed::OwedRevocations;
pub use plan::until;
pub use revoke::{FINALIZER, due, finalize, revoke_due, set_finalizer};

use super::Context;
use super::error::{Error, Result};
use crate::api::{
    LeaseAction, LeaseStatus, LeasedSpec, PendingRevocation, VaultSecret, VaultSecretStatus, parse_duration,
};
use crate::vault::{self, Connection};
use kept::{Cache, Kept};
use plan::{Step, Why};

/// Default of `spec.refresh.revokeGracePeriod`.
const DEFAULT_GRACE: Duration = Duration::from_secs(300);

/// The leased sources of one sync: what the status said, what was kept, what changed.
pub struct Book {
    /// Lease of each source at the start of the sync, by source name.
    previous: BTreeMap<String, LeaseStatus>,
    cache: Cache,
    /// Leases issued during this sync (revoked if the sync fails before recording them).
    issued: Vec<String>,
    /// Leases replaced during this sync, or whose source was removed.
    superseded: Vec<PendingRevocation>,
    /// Something must be recorded before the destination Secret is written.
    dirty: bool,
    /// Warnings to publish as Events.
    warnings: Vec<String>,
    fraction: f64,
    grace: Duration,
    now: Timestamp,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

/// The credentials of a leased source and its lease.
pub struct Obtained {
    pub lease: LeaseStatus,
    pub data: BTreeMap<String, Value>,
}

impl Book {
    /// Opens the book of `vs`: its recorded leases and kept credentials. Leases of sources that
    /// are gone from the spec (or no longer leased) are superseded.
    pub async fn open(vs: &VaultSecret, api: &Api<Secret>) -> Result<Book> {
        let grace = match &vs.spec.refresh.revoke_grace_period {
            None => DEFAULT_GRACE,
            Some(text) => {
                parse_duration(text).map_err(|e| Error::InvalidSpec(format!("spec.refresh.revokeGracePeriod: {e}")))?
            }
        };
        let status = vs.status.clone().unwrap_or_default();
        let leased: Vec<String> = vs
            .spec
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_leased())
            .map(|(i, s)| s.name_or_index(i))
            .collect();
        let has_leases = !leased.is_empty() || status.sources.iter().any(|s| s.lease.is_some());
        let mut cache = if has_leases {
            Cache::load(api, vs).await?
        } else {
            Cache::default()
        };
        let now = Timestamp::now();
        let mut book = Book {
            previous: BTreeMap::new(),
            cache: Cache::default(),
            issued: Vec::new(),
            superseded: Vec::new(),
            dirty: false,
            warnings: Vec::new(),
            fraction: vs.spec.refresh.renewal_fraction(),
            grace,
            now,
        };
        for source in status.sources {
            let Some(lease) = source.lease else { continue };
            if leased.contains(&source.name) {
                book.previous.insert(source.name, *lease);
            } else {
                book.supersede(&source.name, &lease, book.grace);
            }
        }
        cache.retain(&leased);
        book.cache = cache;
        Ok(book)
    }

    /// Whether leases must be recorded before the Secret is written.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Leases superseded during this sync, to add to `status.pendingRevocations`.
    pub fn take_superseded(&mut self) -> Vec<PendingRevocation> {
        std::mem::take(&mut self.superseded)
    }

    /// Records a superseded lease for revocation after `grace` (never after it expires anyway).
    fn supersede(&mut self, source: &str, lease: &LeaseStatus, grace: Duration) {
        if lease.id.starts_with("serial:") {
            // A certificate has no lease to revoke: it simply expires.
            self.dirty = true;
            return;
        }
        let revoke_after = plan::add(self.now, grace).min(lease.expiry.0);
        self.superseded.push(PendingRevocation {
            lease_id: lease.id.clone(),
            source: source.to_owned(),
            revoke_after: Time(revoke_after),
            expiry: lease.expiry.clone(),
            token_ref: lease.token_ref.clone(),
        });
        self.dirty = true;
    }

    /// The credentials of leased `source` (named `name`): kept ones while valid, renewed when due,
    /// new ones when required.
    pub async fn obtain(
        &mut self,
        handle: &vault::Handle,
        conn: &Connection,
        source: LeasedSpec<'_>,
        name: &str,
        ctx: &Context,
    ) -> Result<Obtained> {
        let client = handle.client.as_ref();
        let request_hash = request::request_hash(conn, source, ctx);
        let kept = self
            .previous
            .get(name)
            .and_then(|l| self.cache.get(name, &l.id))
            .map(|k| k.data.clone());
        let mut step = plan::step(self.previous.get(name), &request_hash, kept.is_some(), self.now);
        if matches!(step, Step::Reuse | Step::Renew) && self.limit_by_token(name, ctx) {
            step = Step::Issue(Why::TokenEnding);
        }
        let previous = self.previous.get(name).cloned();
        if let (Step::Renew | Step::Reuse, Some(lease), Some(data)) = (step, previous, kept) {
            if step == Step::Reuse {
                return Ok(Obtained { lease, data });
            }
            match self.renew(client, &lease, name, ctx).await? {
                Some(lease) => return Ok(Obtained { lease, data }),
                None => step = Step::Issue(Why::Rotate),
            }
        }
        let Step::Issue(why) = step else {
            return Err(Error::InvalidValue(format!("source {name}: inconsistent lease state")));
        };
        // A renewal may have just learnt the lease's real end, or that it is gone.
        let previous = self.previous.get(name).cloned();
        self.issue(handle, source, name, why, previous, request_hash, ctx).await
    }

    /// Brings forward the replacement of `name`'s lease when the token that issued it ends first.
    /// Returns whether it must be replaced now.
    fn limit_by_token(&mut self, name: &str, ctx: &Context) -> bool {
        let Some(lease) = self.previous.get_mut(name) else {
            return false;
        };
        let Some(end) = lease.token_ref.as_deref().and_then(|t| ctx.vault.token_end(t)) else {
            return false;
        };
        let limit = plan::token_limit(lease, end.known, end.end, self.now);
        let first = lease.next_action != LeaseAction::Rotate;
        match limit {
            plan::TokenLimit::None => return false,
            plan::TokenLimit::RotateAt(at) => {
                lease.next_action = LeaseAction::Rotate;
                lease.next_action_time = Time(at);
            }
            plan::TokenLimit::RotateNow => {}
        }
        if first {
            ctx.metrics.token_limited_rotations.inc();
            self.warnings.push(format!(
                "The Vault token that issued lease {} of source {name} reaches its max TTL at {}, before the lease expires at {}: Vault will revoke the lease with the token, so the credentials are replaced early. Give the auth role a token_period (periodic tokens renew indefinitely) or a token_max_ttl above the lease's max TTL",
                lease.id, end.end, lease.expiry.0
            ));
            self.dirty = true;
        }
        limit == plan::TokenLimit::RotateNow
    }

    /// Warnings for the VaultSecret's Events (no secret in them).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Renews `lease`. `Ok(None)` when it must be replaced instead (renewal capped by the max TTL,
    /// or the lease is gone); `Err(Stale)` when Vault cannot be reached and the lease still holds.
    async fn renew(
        &mut self,
        client: &VaultClient,
        lease: &LeaseStatus,
        name: &str,
        ctx: &Context,
    ) -> Result<Option<LeaseStatus>> {
        let asked = Duration::from_secs(lease.duration_seconds);
        let renewed = vault::observe(&ctx.metrics, "renew", vault::lease::renew(client, &lease.id, asked)).await;
        let result = if renewed.is_ok() { "success" } else { "failure" };
        ctx.metrics.lease_renewals.with_label_values(&[result]).inc();
        match renewed {
            Ok(r) if plan::capped(asked, r.duration) || !r.renewable => {
                tracing::info!(
                    source = name,
                    lease = lease.id,
                    "lease renewal capped by its max TTL; rotating"
                );
                let mut capped = lease.clone();
                capped.expiry = Time(plan::add(self.now, r.duration));
                self.previous.insert(name.to_owned(), capped);
                Ok(None)
            }
            Ok(r) => Ok(Some(plan::renewed(
                lease,
                r.duration,
                r.renewable,
                self.fraction,
                self.now,
                &mut rand::rng(),
            ))),
            Err(vault::Error::NotFound { .. } | vault::Error::Rejected { code: 400, .. }) => {
                tracing::info!(
                    source = name,
                    lease = lease.id,
                    "lease unknown to Vault; issuing new credentials"
                );
                self.previous.remove(name);
                Ok(None)
            }
            Err(e @ (vault::Error::Unavailable { .. } | vault::Error::RateLimited { .. })) => Err(Error::Stale {
                source_name: name.to_owned(),
                expiry: lease.expiry.0,
                cause: e,
            }),
            Err(e) => Err(e.into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &mut self,
        handle: &vault::Handle,
        source: LeasedSpec<'_>,
        name: &str,
        why: Why,
        previous: Option<LeaseStatus>,
        request_hash: String,
        ctx: &Context,
    ) -> Result<Obtained> {
        let issued = vault::observe(&ctx.metrics, "issue", request::issue(&handle.client, source)).await?;
        crate::crashpoint::at(crate::crashpoint::Step::AfterIssue);
        tracing::info!(
            source = name,
            lease = issued.lease_id,
            reason = why.as_str(),
            "issued new credentials"
        );
        self.issued.push(issued.lease_id.clone());
        if let Some(previous) = &previous {
            match why {
                Why::Unused => self.supersede(name, previous, Duration::ZERO),
                Why::Gone => {}
                _ => self.supersede(name, previous, self.grace),
            }
        }
        let lease = plan::issued(
            &issued,
            request_hash,
            handle.token_ref.clone(),
            self.fraction,
            self.now,
            &mut rand::rng(),
        );
        self.cache.put(
            name,
            Kept {
                lease_id: issued.lease_id,
                data: issued.data.clone(),
            },
        );
        self.dirty = true;
        Ok(Obtained {
            lease,
            data: issued.data,
        })
    }

    /// Records the leases before the Secret is written: `status` (with the new leases and the
    /// superseded ones) first, then the kept credentials.
    pub async fn record(
        &mut self,
        vs: &VaultSecret,
        ctx: &Context,
        api: &Api<Secret>,
        status: VaultSecretStatus,
    ) -> Result<()> {
        super::status::write_if_changed(&ctx.vs_api(vs), vs, status).await?;
        self.issued.clear();
        self.cache.save(api, vs).await
    }

    /// Revokes the leases issued during a sync that failed before recording them.
    pub async fn abandon(&mut self, client: &VaultClient, ctx: &Context) {
        for lease_id in std::mem::take(&mut self.issued) {
            let revoked = vault::observe(&ctx.metrics, "revoke", vault::lease::revoke(client, &lease_id)).await;
            let result = if revoked.is_ok() { "success" } else { "failure" };
            ctx.metrics.lease_revocations.with_label_values(&[result]).inc();
        }
    }
}

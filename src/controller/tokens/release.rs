//! Kept Vault tokens that own no lease any more are revoked and forgotten (issue 13: "no
//! credential outlives its purpose"). Every [`SWEEP`], once the VaultSecret cache is complete,
//! the tokens named by some VaultSecret's status (its leases and the superseded leases waiting for
//! revocation) are collected; [`vault::Sessions::release_unreferenced`] revokes the others.
//!
//! Tokens an earlier operator kept for identities nobody uses any more (their VaultSecrets were
//! deleted while no operator ran) are revoked too, at the address they were kept for.
//!
//! Leases of a VaultSecret deleted with `revokeOnDelete: false` are meant to live on until they
//! expire, and Vault revokes a token's leases with it: their tokens count as named until then.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::super::packed::Packed;
use super::super::{Context, Settings, trust};
use crate::api::VaultSecret;
use crate::vault::{Connection, parse_address};

/// How often kept tokens are checked.
const SWEEP: Duration = Duration::from_secs(15);

/// A token held by a sync this recently is kept even if no status names it yet.
const GRACE: Duration = Duration::from_secs(30);

/// Tokens that no identity in use claims (kept by an earlier operator) are looked at only after
/// this long as the leader, once every VaultSecret had its first sync.
const UNCLAIMED_AFTER: Duration = Duration::from_secs(60);

/// ...and then this often: while the operator runs, only its own identities keep tokens, and those
/// the every-sweep pass already releases. (Reading the Secret every sweep would be a steady-state
/// API request for nothing.)
const UNCLAIMED_EVERY: Duration = Duration::from_secs(600);

/// Tokens of leases left to expire by a deletion, until when.
#[derive(Default)]
pub struct Orphans(Mutex<HashMap<String, jiff::Timestamp>>);

impl Orphans {
    /// Keeps the tokens of `vs`'s leases if it was deleted without revoking them.
    pub fn note_deleted(&self, vs: &VaultSecret) {
        if vs.spec.refresh.revokes_on_delete() {
            return;
        }
        let mut orphans = self.0.lock();
        for (token, expiry) in leases(vs) {
            let until = orphans.entry(token).or_insert(expiry);
            *until = (*until).max(expiry);
        }
    }

    fn live(&self, now: jiff::Timestamp) -> Vec<String> {
        let mut orphans = self.0.lock();
        orphans.retain(|_, until| *until > now);
        orphans.keys().cloned().collect()
    }
}

/// The tokens and expiries of `vs`'s leases, current and superseded; a token ref of `""` stands
/// for a superseded lease recorded before pending revocations named their token.
fn leases(vs: &VaultSecret) -> Vec<(String, jiff::Timestamp)> {
    let Some(status) = vs.status.as_ref() else {
        return Vec::new();
    };
    let current = status
        .sources
        .iter()
        .filter_map(|s| s.lease.as_ref())
        .filter_map(|l| Some((l.token_ref.clone()?, l.expiry.0)));
    let pending = status
        .pending_revocations
        .iter()
        .map(|p| (p.token_ref.clone().unwrap_or_default(), p.expiry.0));
    current.chain(pending).collect()
}

/// Every token some VaultSecret still needs; `None` when that cannot be known (a superseded
/// lease that does not name its token).
fn referenced(store: &Store<Packed>, ctx: &Context) -> Option<HashSet<String>> {
    let mut tokens: HashSet<String> = ctx.orphans.live(jiff::Timestamp::now()).into_iter().collect();
    // An owed revocation needs the token that issued its lease.
    tokens.extend(ctx.owed.tokens());
    for packed in store.state().iter().filter(|p| p.holds_leases()) {
        // Undecodable (never expected): its tokens cannot be told, so none is released.
        let vs = packed.unpack().ok()?;
        tokens.extend(leases(&vs).into_iter().map(|(token, _)| token));
    }
    (!tokens.contains("")).then_some(tokens)
}

/// Runs the sweep until the task is aborted, from when `listed` turns true (the first listing of
/// VaultSecrets is in `store`: before that, every token would look unnamed).
pub async fn run(ctx: Arc<Context>, store: Store<Packed>, mut listed: watch::Receiver<bool>) {
    // Not `Store::wait_until_ready`: its one-shot wakes only one of several waiters.
    if listed.wait_for(|listed| *listed).await.is_err() {
        return;
    }
    // An operator that watches some namespaces only cannot tell another install's tokens (kept
    // in the same Secret) from abandoned ones: it never looks at unclaimed tokens.
    let mut unclaimed_due = ctx
        .settings
        .watch_namespaces
        .is_empty()
        .then(|| Instant::now() + UNCLAIMED_AFTER);
    let mut tick = tokio::time::interval(SWEEP);
    loop {
        tick.tick().await;
        match referenced(&store, &ctx) {
            Some(tokens) => {
                let now = Instant::now();
                let unclaimed = unclaimed_due.is_some_and(|due| now >= due);
                if unclaimed {
                    unclaimed_due = Some(now + UNCLAIMED_EVERY);
                }
                let connection = |address: &str, namespace| connection(&ctx.settings, address, namespace);
                ctx.vault
                    .release_unreferenced(&tokens, GRACE, unclaimed, connection)
                    .await;
            }
            None => tracing::debug!("kept Vault tokens not checked: a superseded lease does not name its token"),
        }
    }
}

/// Where to revoke a token kept for `address` and `namespace`: with the operator's CA at its
/// default address, the system roots elsewhere (a CA from a VaultSecret's Secret is not kept).
/// `None` (the token is only forgotten) for an address the administrator does not allow: the
/// kept value is no reason to contact any other server.
pub(in crate::controller) fn connection(
    settings: &Settings,
    address: &str,
    namespace: Option<String>,
) -> Option<Connection> {
    let address = parse_address(address).ok()?;
    trust::check_address(&address, settings).ok()?;
    let default = settings
        .vault_address
        .as_ref()
        .is_some_and(|d| trust::same_server(d, &address));
    Some(Connection {
        ca_pem: default.then(|| settings.vault_ca_pem.clone()).flatten(),
        address,
        namespace,
    })
}

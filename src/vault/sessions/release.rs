//! No kept token outlives its purpose: a token kept in the [`TokenStore`] for the leases it owns is
//! revoked in Vault and forgotten once no VaultSecret names it any more.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::store::Kept;
use super::{Sessions, token_ref};
use crate::vault::{self, Connection, Error, client};

/// How a kept token's revocation went.
enum Revoked {
    /// Revoked, or already gone: forget it.
    Done,
    /// Not now (Vault unreachable, sealed, …): try again at the next sweep.
    Later,
}

impl Sessions {
    /// Revokes (`revoke-self`) and drops from the [`TokenStore`] every kept token whose
    /// [`token_ref`] is not in `referenced` (the tokens some VaultSecret's leases or pending
    /// revocations name):
    /// - tokens of identities in use here, unless a sync held them for leases within `grace` (a
    ///   lease just issued is in no status yet);
    /// - with `unclaimed`, also tokens kept by an earlier operator for identities nobody uses any
    ///   more (say, deleted while no operator ran), revoked at the place they were kept for, with
    ///   `connection` supplying the CA. A bare token of older versions can only be forgotten.
    ///
    /// Tokens used as given are never kept, so never revoked. Returns how many were released; a
    /// revocation that fails for a passing reason is tried again on the next call.
    pub async fn release_unreferenced(
        &self,
        referenced: &HashSet<String>,
        grace: Duration,
        unclaimed: bool,
        connection: impl Fn(&str, Option<String>) -> Option<Connection>,
    ) -> usize {
        let entries: Vec<_> = self
            .entries
            .lock()
            .iter()
            .map(|((conn, _), entry)| (conn.clone(), entry.clone()))
            .collect();
        let claimed: HashSet<String> = entries.iter().map(|(_, e)| e.key.clone()).collect();
        let now = Instant::now();
        let mut released = 0;
        for (conn, entry) in entries {
            let mut state = entry.state.lock().await;
            let Some(kept) = state.saved.clone() else { continue };
            if referenced.contains(&kept) || state.held_at.is_some_and(|t| now.duration_since(t) < grace) {
                continue;
            }
            let current = state.session.as_ref().filter(|s| s.token_ref == kept);
            let token = match (current, &self.store) {
                (Some(session), _) => Some(session.client.settings.token.clone()),
                (None, Some(store)) => store.load(entry.key.clone()).await.map(|v| Kept::decode(&v).token),
                (None, None) => None,
            };
            if let Some(token) = token
                && let Revoked::Later = self.revoke(&conn, &token, &kept).await
            {
                continue;
            }
            if let Some(store) = &self.store {
                store.remove(entry.key.clone()).await;
            }
            tracing::info!(
                token = kept,
                identity = entry.label,
                "revoked the kept Vault token: it owns no lease any more"
            );
            state.saved = None;
            state.held_at = None;
            if state.session.as_ref().is_some_and(|s| s.token_ref == kept) {
                state.session = None;
            }
            *entry.held_until.lock() = None;
            released += 1;
        }
        let Some(store) = self.store.as_ref().filter(|_| unclaimed) else {
            return released;
        };
        for (key, value) in store.entries().await {
            let kept = Kept::decode(&value);
            let reference = token_ref(&kept.token);
            if claimed.contains(&key) || referenced.contains(&reference) {
                continue;
            }
            let place = kept
                .address
                .as_deref()
                .and_then(|a| connection(a, kept.namespace.clone()));
            if let Some(conn) = place
                && let Revoked::Later = self.revoke(&conn, &kept.token, &reference).await
            {
                continue;
            }
            store.remove(key).await;
            tracing::info!(token = reference, "dropped a kept Vault token nobody uses any more");
            released += 1;
        }
        released
    }

    /// The token whose [`token_ref`] is `reference`, if this operator still has it: the current
    /// token of an identity in use, or one kept in the [`TokenStore`].
    pub async fn token_for(&self, reference: &str) -> Option<String> {
        let entries: Vec<_> = self.entries.lock().values().cloned().collect();
        for entry in entries {
            let state = entry.state.lock().await;
            if let Some(session) = state.session.as_ref().filter(|s| s.token_ref == reference) {
                return Some(session.client.settings.token.clone());
            }
        }
        let kept = self.store.as_ref()?.entries().await;
        kept.into_iter()
            .map(|(_, value)| Kept::decode(&value).token)
            .find(|token| token_ref(token) == reference)
    }

    async fn revoke(&self, conn: &Connection, token: &str, reference: &str) -> Revoked {
        let Ok(client) = client::build(conn, token, self.timeout) else {
            return Revoked::Done;
        };
        let revoked = vault::observe(&self.metrics, "revoke", async {
            // vaultrs' own call, not `raw::send`: the leader's fence is checked here as there.
            crate::leader::fence::may_act().await;
            vaultrs::token::revoke_self(&client)
                .await
                .map_err(|e| Error::from_client(e, conn.address.as_str(), "revoke-self"))
        })
        .await;
        match revoked {
            // A token Vault no longer accepts has nothing left to revoke.
            Ok(()) | Err(Error::PermissionDenied { .. }) => Revoked::Done,
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    token = reference,
                    reason = e.reason(),
                    "cannot revoke a kept Vault token that owns no lease; will retry"
                );
                Revoked::Later
            }
            Err(e) => {
                tracing::warn!(
                    token = reference,
                    reason = e.reason(),
                    "cannot revoke a kept Vault token that owns no lease; forgetting it (it expires on its own)"
                );
                Revoked::Done
            }
        }
    }
}

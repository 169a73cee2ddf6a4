//! No kept token outlives its purpose: a token kept in the [`TokenStore`] for the leases it owns is
//! revoked in Vault and forgotten once no VaultSecret names it any more.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Sessions, lock};
use crate::vault::{self, Error, client};

impl Sessions {
    /// Revokes (`revoke-self`) and drops from the [`TokenStore`] every kept token whose
    /// [`token_ref`](super::token_ref) is not in `referenced` (the tokens some VaultSecret's
    /// leases or pending revocations name) and that no sync has held for leases within `grace`
    /// (a lease just issued is in no status yet). Tokens used as given are never kept, so never
    /// revoked. Returns how many tokens were released; a failed revocation is tried again on the
    /// next call.
    pub async fn release_unreferenced(&self, referenced: &HashSet<String>, grace: Duration) -> usize {
        let entries: Vec<_> = lock(&self.entries)
            .iter()
            .map(|((conn, _), entry)| (conn.clone(), entry.clone()))
            .collect();
        let now = Instant::now();
        let mut released = 0;
        for (conn, entry) in entries {
            let mut state = entry.state.lock().await;
            let Some(kept) = state.saved.clone() else { continue };
            if referenced.contains(&kept) || state.held_at.is_some_and(|t| now.duration_since(t) < grace) {
                continue;
            }
            let current = state
                .session
                .as_ref()
                .filter(|s| s.token_ref == kept)
                .map(|s| s.client.clone());
            let client = match (current, &self.store) {
                (Some(client), _) => Some(client),
                (None, Some(store)) => store
                    .load(entry.key.clone())
                    .await
                    .and_then(|token| client::build(&conn, &token, self.timeout).ok())
                    .map(Arc::new),
                (None, None) => None,
            };
            if let Some(client) = client {
                let revoked = vault::observe(&self.metrics, "revoke", async {
                    vaultrs::token::revoke_self(client.as_ref())
                        .await
                        .map_err(|e| Error::from_client(e, conn.address.as_str(), "revoke-self"))
                })
                .await;
                match revoked {
                    // A token Vault no longer accepts has nothing left to revoke.
                    Ok(()) | Err(Error::PermissionDenied { .. }) => {}
                    Err(e) => {
                        tracing::warn!(
                            token = kept,
                            reason = e.reason(),
                            "cannot revoke a kept Vault token that owns no lease; will retry"
                        );
                        continue;
                    }
                }
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
            *lock(&entry.held_until) = None;
            released += 1;
        }
        released
    }
}

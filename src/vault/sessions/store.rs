//! Where tokens that own leases are kept across operator restarts, and how they are named.
//!
//! Vault revokes every lease a token created when that token expires. A restarted operator (or
//! a new leader) therefore picks up the token its predecessor used, rather than logging in anew
//! and letting the old token — and with it every credential it issued — expire.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::token::Session;
use super::{EXPIRY_MARGIN, Entry, Handle, Sessions, State, lock, start_renewing};
use crate::vault::{self, Connection, Identity, login};

/// Persistent storage for tokens, keyed by [`key`]. Implementations must keep tokens secret
/// (the controller uses a Secret in the operator's namespace).
pub trait TokenStore: Send + Sync {
    /// The token kept under `key`, if any. Failures read as "none" (the caller logs in).
    fn load(&self, key: String) -> BoxFuture<'_, Option<String>>;
    /// Keeps `token` under `key`, replacing what was there. Failures are logged, not returned.
    fn save(&self, key: String, token: String) -> BoxFuture<'_, ()>;
    /// Forgets `key`.
    fn remove(&self, key: String) -> BoxFuture<'_, ()>;
}

/// A stable name for (connection, identity): the same after a restart, nothing secret in it.
pub fn key(conn: &Connection, identity: &Identity) -> String {
    let mut hash = Sha256::new();
    hash.update(conn.address.as_str());
    hash.update([0]);
    hash.update(conn.namespace.as_deref().unwrap_or_default());
    hash.update([0]);
    hash.update(format!("{identity:?}"));
    hex::encode(&hash.finalize()[..16])
}

/// A short hash that names a token in status and metrics without revealing it.
pub fn token_ref(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}

impl Sessions {
    /// Keeps the current token of `identity` alive until `until` (leases it issued live that
    /// long), and in the [`TokenStore`] so that a restarted operator uses it too.
    pub async fn hold(&self, conn: &Connection, identity: &Identity, until: Instant) {
        let entry = self.entry(conn, identity);
        {
            let mut held = lock(&entry.held_until);
            *held = (*held).max(Some(until));
        }
        let mut state = entry.state.lock().await;
        state.held_at = Some(Instant::now());
        let Some(session) = state.session.as_ref() else { return };
        if session.ttl.is_none() {
            // A token used as given (the operator's, or one from a Secret) is not ours to keep.
            return;
        }
        let (token, reference) = (session.client.settings.token.clone(), session.token_ref.clone());
        if let Some(store) = &self.store
            && state.saved.as_deref() != Some(reference.as_str())
        {
            store.save(entry.key.clone(), token).await;
            state.saved = Some(reference);
        }
        start_renewing(&entry, &mut state);
    }

    /// Adopts the token a previous operator left in the store, if Vault still accepts it.
    pub(super) async fn restore(&self, entry: &Arc<Entry>, state: &mut State, conn: &Connection) -> Option<Handle> {
        let store = self.store.as_ref()?;
        let token = store.load(entry.key.clone()).await?;
        match vault::observe(&self.metrics, "lookup", login::adopt(conn, &token, self.timeout)).await {
            Ok(adopted) if adopted.ttl.is_none_or(|ttl| ttl > EXPIRY_MARGIN * 2) => {
                entry.report_expiry(adopted.ttl);
                let client = Arc::new(adopted.client);
                let session = Session {
                    token_ref: token_ref(&token),
                    client,
                    issued: Instant::now(),
                    ttl: adopted.ttl,
                    increment: adopted.increment,
                    renewable: adopted.renewable,
                    capped: false,
                };
                tracing::info!(
                    token = session.token_ref,
                    "picked up the Vault token a previous operator used"
                );
                let handle = session.handle();
                state.saved = Some(session.token_ref.clone());
                state.held_at = Some(Instant::now());
                state.session = Some(session);
                start_renewing(entry, state);
                Some(handle)
            }
            other => {
                match other {
                    // About to expire, and with it every lease it issued: those are replaced now.
                    Ok(adopted) => entry.ends.note_ref(&token_ref(&token), adopted.ttl.unwrap_or_default()),
                    Err(e) => tracing::info!(
                        reason = e.reason(),
                        "the kept Vault token is no longer usable; logging in"
                    ),
                }
                store.remove(entry.key.clone()).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_reveal_nothing() {
        let conn = Connection {
            address: crate::vault::parse_address("http://127.0.0.1:8200").unwrap(),
            namespace: None,
            ca_pem: None,
        };
        assert_eq!(key(&conn, &Identity::Operator), key(&conn, &Identity::Operator));
        let token = "s.canaryTokenValue0123456789";
        let r = token_ref(token);
        assert_eq!(r.len(), 16);
        assert!(!token.contains(&r) && !r.contains("canary"));
    }
}

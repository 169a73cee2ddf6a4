//! Where tokens that own leases are kept across operator restarts, and how they are named.
//!
//! Vault revokes every lease a token created when that token expires. A restarted operator (or
//! a new leader) therefore picks up the token its predecessor used, rather than logging in anew
//! and letting the old token — and with it every credential it issued — expire.

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::vault::{Connection, Identity};

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

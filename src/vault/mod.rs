//! Vault / OpenBao client layer: connections, identities and reads.
//!
//! One authenticated client exists per (connection, identity) pair and is shared by every
//! VaultSecret that uses it. Today the only identity is the operator's own token; the
//! per-namespace Kubernetes, AppRole and token identities plug in as more [`Identity`] variants.

mod client;
mod error;
pub mod kv;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use client::parse_address;
pub use error::{Error, Result};
use url::Url;
use vaultrs::client::VaultClient;

/// Where a Vault server is and how to trust it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Server address.
    pub address: Url,
    /// Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
    /// PEM CA bundle; the system roots when absent.
    pub ca_pem: Option<Arc<[u8]>>,
}

/// Who a client authenticates as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The token the operator was started with (`--vault-token-file` / `VAULTSYNC_VAULT_TOKEN`).
    OperatorToken,
}

/// Authenticated clients, one per (connection, identity), created on first use.
pub struct Clients {
    operator_token: Option<String>,
    timeout: Duration,
    clients: Mutex<HashMap<(Connection, Identity), Arc<VaultClient>>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("has_operator_token", &self.operator_token.is_some())
            .finish()
    }
}

impl Clients {
    /// A pool whose [`Identity::OperatorToken`] is `operator_token`; requests time out after `timeout`.
    pub fn new(operator_token: Option<String>, timeout: Duration) -> Self {
        Self {
            operator_token,
            timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an operator token is configured.
    pub fn has_operator_token(&self) -> bool {
        self.operator_token.is_some()
    }

    /// The shared client for `identity` at `conn`.
    pub fn get(&self, conn: &Connection, identity: &Identity) -> Result<Arc<VaultClient>> {
        let key = (conn.clone(), identity.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let token = match identity {
            Identity::OperatorToken => self
                .operator_token
                .as_deref()
                .ok_or_else(|| Error::Config("the operator has no Vault token configured".into()))?,
        };
        let client = Arc::new(client::build(conn, token, self.timeout)?);
        clients.insert(key, client.clone());
        Ok(client)
    }
}

//! Vault / OpenBao client layer: connections, identities, logins and reads.
//!
//! One authenticated client exists per (connection, identity) pair ([`Sessions`]) and is shared
//! by every VaultSecret that uses it.

mod client;
mod error;
pub mod kv;
mod login;
mod sessions;

use std::sync::Arc;

pub use client::parse_address;
pub use error::{Error, Result};
pub use login::Credential;
pub use sessions::{Handle, Outcome, Sessions};
use url::Url;

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

/// Who a client authenticates as. Holds no secret: only what tells identities apart, so a
/// changed credential (new Secret resourceVersion, recreated ServiceAccount) is a new identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The operator's own token (`--vault-token-file`), for allow-listed namespaces.
    Operator,
    /// Kubernetes auth as a ServiceAccount.
    Kubernetes {
        mount: String,
        role: String,
        namespace: String,
        service_account: String,
        /// The ServiceAccount's UID: a recreated ServiceAccount is another identity.
        uid: String,
        audiences: Vec<String>,
    },
    /// AppRole auth with the secret ID from a Secret.
    AppRole { mount: String, role_id: String, secret_uid: String, secret_version: String },
    /// A token from a Secret.
    Token { secret_uid: String, secret_version: String },
}

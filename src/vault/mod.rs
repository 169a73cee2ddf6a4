//! Vault / OpenBao client layer: connections, identities, logins and reads.
//!
//! One authenticated client exists per (connection, identity) pair ([`Sessions`]) and is shared
//! by every VaultSecret that uses it.

mod client;
mod coalesce;
mod error;
pub mod kv;
pub mod lease;
mod login;
pub mod pki;
mod sessions;

use std::sync::Arc;

pub use client::parse_address;
pub use error::{Error, Result};
pub use login::Credential;
pub use sessions::{Handle, Outcome, Sessions, TokenEnd, TokenStore, legacy_token_key, token_key, token_ref};
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
    AppRole {
        mount: String,
        role_id: String,
        namespace: String,
        secret: String,
        secret_uid: String,
        secret_version: String,
    },
    /// A token from a Secret.
    Token {
        namespace: String,
        secret: String,
        secret_uid: String,
        secret_version: String,
    },
}

impl Identity {
    /// A metric label that tells identities apart without anything secret in it.
    pub fn label(&self) -> String {
        match self {
            Identity::Operator => "operator".into(),
            Identity::Kubernetes {
                namespace,
                service_account,
                role,
                ..
            } => {
                format!("kubernetes/{namespace}/{service_account}/{role}")
            }
            Identity::AppRole { namespace, secret, .. } => format!("approle/{namespace}/{secret}"),
            Identity::Token { namespace, secret, .. } => format!("token/{namespace}/{secret}"),
        }
    }
}

/// Times `request` as Vault operation `operation` in `metrics`.
pub(crate) async fn observe<T>(
    metrics: &crate::metrics::Metrics,
    operation: &str,
    request: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = std::time::Instant::now();
    let result = request.await;
    let status = match &result {
        Ok(_) => "2xx",
        Err(e) => e.status_class(),
    };
    metrics
        .vault_request_duration
        .with_label_values(&[operation])
        .observe(started.elapsed().as_secs_f64());
    metrics.vault_requests.with_label_values(&[operation, status]).inc();
    result
}

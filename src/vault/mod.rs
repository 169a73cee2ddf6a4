//! Vault / OpenBao client layer: connections, identities, logins and reads.
//!
//! One authenticated client exists per (connection, identity) pair ([`Sessions`]) and is shared
//! by every VaultSecret that uses it.

pub mod auth;
mod client;
mod coalesce;
mod error;
mod identity;
pub mod kv;
pub mod lease;
mod limit;
mod login;
pub mod pki;
mod raw;
mod sessions;

use std::sync::Arc;

pub use client::{build as build_client, parse_address};
pub use error::{Error, Result};
pub use identity::{Field, Identity};
pub use login::Credential;
pub use raw::{OBJECT_HEADER, on_behalf_of};
pub use sessions::{Handle, Outcome, Sessions, TokenEnd, TokenStore, token_key, token_ref};
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

//! Leased secrets: generic reads that keep Vault's lease envelope, and `sys/leases/*`.
//!
//! vaultrs strips the envelope (`lease_id`, `lease_duration`, `renewable`) from generic reads
//! and has no `sys/leases` API, so these requests are [`Raw`] requests sent through the same
//! authenticated client.

use std::collections::BTreeMap;
use std::time::Duration;

use rustify::enums::RequestMethod;
use serde::Deserialize;
use serde_json::{Value, json};
use vaultrs::client::VaultClient;

use super::raw::{Raw, send};
use super::{Error, Result};

/// Vault's response envelope for a leased secret.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    data: Option<BTreeMap<String, Value>>,
}

/// A secret Vault issued with a lease. Its `data` must not outlive the sync that needs it.
pub struct Leased {
    /// The lease to renew and revoke (empty for secrets without a lease, e.g. PKI certificates).
    pub lease_id: String,
    /// Lease lifetime from now.
    pub duration: Duration,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// The secret's fields.
    pub data: BTreeMap<String, Value>,
}

impl std::fmt::Debug for Leased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leased")
            .field("lease_id", &self.lease_id)
            .field("duration", &self.duration)
            .field("keys", &self.data.keys())
            .finish()
    }
}

/// A lease after renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// Lifetime granted from now; less than asked when the max TTL is near.
    pub duration: Duration,
    pub renewable: bool,
}

fn parse_envelope(bytes: &[u8], operation: &str) -> Result<Envelope> {
    serde_json::from_slice(bytes).map_err(|_| Error::InvalidResponse {
        operation: operation.into(),
        detail: "the response is not a Vault secret".into(),
    })
}

/// Reads (GET) or writes (POST/PUT with `params`) `mount/path` and keeps the lease envelope.
pub async fn issue(
    client: &VaultClient,
    method: &str,
    mount: &str,
    path: &str,
    params: &BTreeMap<String, Value>,
) -> Result<Leased> {
    let operation = format!("{method} {mount}/{path}");
    let (method, body) = match method {
        "GET" => (RequestMethod::GET, None),
        "PUT" => (RequestMethod::PUT, Some(json!(params))),
        _ => (RequestMethod::POST, Some(json!(params))),
    };
    let bytes = send(
        client,
        &operation,
        Raw {
            path: format!("{mount}/{path}"),
            method,
            body,
        },
    )
    .await?;
    let envelope = parse_envelope(&bytes, &operation)?;
    let data = envelope.data.ok_or_else(|| Error::NotFound {
        what: operation.clone(),
    })?;
    Ok(Leased {
        lease_id: envelope.lease_id,
        duration: Duration::from_secs(envelope.lease_duration),
        renewable: envelope.renewable,
        data,
    })
}

/// `sys/leases/renew`, asking for `increment`.
pub async fn renew(client: &VaultClient, lease_id: &str, increment: Duration) -> Result<Renewed> {
    let body = json!({"lease_id": lease_id, "increment": increment.as_secs()});
    let request = Raw {
        path: "sys/leases/renew".into(),
        method: RequestMethod::PUT,
        body: Some(body),
    };
    let bytes = send(client, "renew lease", request).await?;
    let envelope = parse_envelope(&bytes, "renew lease")?;
    Ok(Renewed {
        duration: Duration::from_secs(envelope.lease_duration),
        renewable: envelope.renewable,
    })
}

/// `sys/leases/revoke`. A lease that no longer exists counts as revoked.
pub async fn revoke(client: &VaultClient, lease_id: &str) -> Result<()> {
    let request = Raw {
        path: "sys/leases/revoke".into(),
        method: RequestMethod::PUT,
        body: Some(json!({"lease_id": lease_id})),
    };
    match send(client, "revoke lease", request).await {
        Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_envelope_is_kept() {
        let body = br#"{"request_id":"r","lease_id":"database/creds/app/abc","lease_duration":10,"renewable":true,
            "data":{"username":"v-app-1","password":"pw"}}"#;
        let envelope = parse_envelope(body, "read").unwrap();
        assert_eq!(envelope.lease_id, "database/creds/app/abc");
        assert_eq!(envelope.lease_duration, 10);
        assert!(envelope.renewable);
        assert_eq!(envelope.data.unwrap().len(), 2);
    }

    #[test]
    fn a_leased_secret_never_prints_its_data() {
        let leased = Leased {
            lease_id: "l".into(),
            duration: Duration::from_secs(1),
            renewable: true,
            data: [("password".to_string(), Value::String("hunter2-canary".into()))].into(),
        };
        assert!(!format!("{leased:?}").contains("hunter2"));
    }
}

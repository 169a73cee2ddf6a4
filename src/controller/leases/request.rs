//! What a leased source asks Vault for: issuing its credentials, and the hash that tells whether
//! a spec edit changed the request.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use vaultrs::client::VaultClient;

use super::plan::Issued;
use crate::api::{DynamicSource, LeasedSpec, PkiSource};
use crate::controller::Context;
use crate::vault::{self, Connection};

/// Issues the credentials of leased `source`.
pub async fn issue(client: &VaultClient, source: LeasedSpec<'_>) -> vault::Result<Issued> {
    match source {
        LeasedSpec::Dynamic(d) => issue_dynamic(client, d).await,
        LeasedSpec::Pki(p) => issue_pki(client, p).await,
    }
}

async fn issue_dynamic(client: &VaultClient, d: &DynamicSource) -> vault::Result<Issued> {
    let params = d
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let leased = vault::lease::issue(client, d.method.as_str(), &d.mount, &d.path, &params).await?;
    Ok(Issued {
        lease_id: leased.lease_id,
        duration: leased.duration,
        renewable: leased.renewable,
        data: leased.data,
    })
}

async fn issue_pki(client: &VaultClient, p: &PkiSource) -> vault::Result<Issued> {
    let request = vault::pki::Request {
        common_name: p.common_name.clone(),
        alt_names: p.alt_names.clone(),
        ip_sans: p.ip_sans.clone(),
        ttl: p.ttl.clone(),
    };
    let cert = vault::pki::issue(client, &p.mount, &p.role, &request).await?;
    let left = cert.expiration - Timestamp::now().as_second();
    let data = vault::pki::tls_data(&cert)
        .into_iter()
        .map(|(k, v)| (k, Value::String(String::from_utf8_lossy(&v).into_owned())))
        .collect();
    Ok(Issued {
        lease_id: format!("serial:{}", cert.serial_number),
        duration: Duration::from_secs(u64::try_from(left).unwrap_or(0)),
        renewable: false,
        data,
    })
}

/// Keyed hash of what a leased source asks Vault for: connection, kind and request, not the
/// key mapping, so only a change of the request issues new credentials.
pub fn request_hash(conn: &Connection, source: LeasedSpec<'_>, ctx: &Context) -> String {
    let request = match source {
        LeasedSpec::Dynamic(d) => json!({"mount": d.mount, "path": d.path, "method": d.method, "params": d.params}),
        LeasedSpec::Pki(p) => json!(p),
    };
    let body = json!({
        "address": conn.address.as_str(),
        "namespace": conn.namespace,
        "kind": source.kind(),
        "request": request,
    });
    ctx.hash_key.request_hash(body.to_string().as_bytes())
}

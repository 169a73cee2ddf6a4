//! Which Vault server a VaultSecret talks to.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use url::Url;

use super::super::error::{Error, Result};
use super::super::{Context, Settings, trust};
use crate::api::VaultSecret;
use crate::vault::{Connection, parse_address};

/// Where `vs` talks to: its address (one the administrator allows) and Vault namespace. Reads
/// nothing, so it is known even when the namespace's Secrets are gone.
pub fn place(vs: &VaultSecret, settings: &Settings) -> Result<(Url, Option<String>)> {
    let spec = vs.spec.vault.as_ref();
    let address = match (spec.and_then(|v| v.address.as_ref()), &settings.vault_address) {
        (Some(address), _) => {
            parse_address(address).map_err(|e| Error::InvalidSpec(format!("spec.vault.address: {e}")))?
        }
        (None, Some(default)) => default.clone(),
        (None, None) => {
            return Err(Error::InvalidSpec(
                "spec.vault.address is not set and the operator has no default (--vault-address)".into(),
            ));
        }
    };
    // Before anything is read or sent: an address the administrator does not trust gets nothing.
    trust::check_address(&address, settings)?;
    Ok((address, spec.and_then(|v| v.namespace.clone())))
}

/// Resolves `spec.vault` against the operator's defaults. The CA Secret is read from the
/// VaultSecret's own namespace; nothing here can point at another namespace.
pub async fn resolve(vs: &VaultSecret, ctx: &Context) -> Result<Connection> {
    let (address, namespace) = place(vs, &ctx.settings)?;
    let spec = vs.spec.vault.as_ref();
    let ca_pem = match spec.and_then(|v| v.ca_secret_ref.as_ref()) {
        Some(r) => {
            trust::check_secret_ref(r, "spec.vault.caSecretRef")?;
            Some(read_ca(vs, ctx, &r.name, &r.key).await?)
        }
        None => ctx.settings.vault_ca_pem.clone(),
    };
    Ok(Connection {
        address,
        namespace,
        ca_pem,
    })
}

async fn read_ca(vs: &VaultSecret, ctx: &Context, name: &str, key: &str) -> Result<Arc<[u8]>> {
    let ns = vs.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api.get_opt(name).await.map_err(Error::kube("read CA Secret"))?;
    let secret =
        secret.ok_or_else(|| Error::CaSecret(format!("CA Secret {name} (spec.vault.caSecretRef) not found")))?;
    let bytes = secret.data.as_ref().and_then(|d| d.get(key));
    let bytes = bytes.ok_or_else(|| Error::CaSecret(format!("CA Secret {name} has no key {key:?}")))?;
    Ok(bytes.0.as_slice().into())
}

//! The credentials of each leased source, kept in a Secret beside the destination
//! (`<vaultsecret>.vaultsync-leases`, controlled by the VaultSecret), so that a restarted
//! operator or a new leader reuses and renews them instead of issuing new ones. The Secret holds
//! the same values as the destination, in the same namespace, readable by the same people.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::MANAGER;
use crate::api::VaultSecret;
use crate::controller::destination::{self, Ownership};
use crate::controller::error::{Error, Result};

/// Suffix of the Secret's name.
const SUFFIX: &str = ".vaultsync-leases";

/// Credentials of one lease. Never printed.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// The lease these credentials belong to.
    pub lease_id: String,
    /// The response data Vault issued.
    pub data: BTreeMap<String, Value>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("lease_id", &self.lease_id)
            .field("keys", &self.data.keys())
            .finish()
    }
}

/// The kept credentials of one VaultSecret, by source name.
#[derive(Debug, Default)]
pub struct Cache {
    entries: BTreeMap<String, Kept>,
    exists: bool,
    changed: bool,
}

/// Name of the Secret holding the kept credentials of `vs`.
pub fn name(vs: &VaultSecret) -> String {
    format!("{}{SUFFIX}", vs.name_any())
}

impl Cache {
    /// Reads the kept credentials of `vs`. Entries that cannot be parsed are ignored (their
    /// leases are then replaced).
    pub async fn load(api: &Api<Secret>, vs: &VaultSecret) -> Result<Cache> {
        let name = name(vs);
        let Some(secret) = api.get_opt(&name).await.map_err(Error::kube("read lease Secret"))? else {
            return Ok(Cache::default());
        };
        if destination::ownership(&secret, vs) != Ownership::Ours {
            return Err(Error::SecretNotOwned(format!(
                "Secret {name} (where vaultsync keeps leased credentials) exists and was not created by this VaultSecret"
            )));
        }
        let entries = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(source, bytes)| Some((source, serde_json::from_slice(&bytes.0).ok()?)))
            .collect();
        Ok(Cache {
            entries,
            exists: true,
            changed: false,
        })
    }

    /// The credentials kept for `source` if they belong to `lease_id`.
    pub fn get(&self, source: &str, lease_id: &str) -> Option<&Kept> {
        self.entries.get(source).filter(|k| k.lease_id == lease_id)
    }

    /// Keeps `kept` for `source`.
    pub fn put(&mut self, source: &str, kept: Kept) {
        self.entries.insert(source.to_owned(), kept);
        self.changed = true;
    }

    /// Drops the entries of sources not in `sources`.
    pub fn retain(&mut self, sources: &[String]) {
        let before = self.entries.len();
        self.entries.retain(|k, _| sources.contains(k));
        self.changed |= self.entries.len() != before;
    }

    /// Writes the Secret if anything changed (deletes it once nothing is kept).
    pub async fn save(&mut self, api: &Api<Secret>, vs: &VaultSecret) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let name = name(vs);
        if self.entries.is_empty() {
            if self.exists {
                api.delete(&name, &DeleteParams::default())
                    .await
                    .map_err(Error::kube("delete lease Secret"))?;
            }
            self.changed = false;
            return Ok(());
        }
        let data = self
            .entries
            .iter()
            .map(|(source, kept)| {
                let bytes = serde_json::to_vec(kept)
                    .map_err(|_| Error::InvalidValue("credentials could not be kept".into()))?;
                Ok((source.clone(), ByteString(bytes)))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: vs.namespace(),
                labels: Some([("app.kubernetes.io/part-of".to_owned(), MANAGER.to_owned())].into()),
                owner_references: Some(vec![destination::owner_reference(vs)?]),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        let mut body =
            serde_json::to_value(&secret).map_err(|_| Error::InvalidValue("credentials could not be kept".into()))?;
        body["apiVersion"] = json!("v1");
        body["kind"] = json!("Secret");
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
            .await
            .map_err(Error::kube("write lease Secret"))?;
        self.exists = true;
        self.changed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_credentials_never_print_their_values() {
        let kept = Kept {
            lease_id: "database/creds/app/x".into(),
            data: [("password".to_owned(), json!("canary-pw-123"))].into(),
        };
        let shown = format!("{kept:?}");
        assert!(
            shown.contains("database/creds/app/x") && !shown.contains("canary-pw-123"),
            "{shown}"
        );
    }
}

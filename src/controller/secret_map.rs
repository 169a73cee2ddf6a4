//! A Secret in the operator's namespace used as a small durable map of keys to text values: the
//! Vault tokens that own leases, and the revocations still owed. Written one change at a time
//! (merge patches of the changed keys), created on first write.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::MANAGER;

/// The Secret `name` in the operator's namespace, as a map.
pub struct SecretMap {
    api: Api<Secret>,
    name: &'static str,
    /// Read-modify-write of the Secret one at a time.
    writing: tokio::sync::Mutex<()>,
}

impl SecretMap {
    /// The map kept in Secret `name` of `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &'static str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Every key and value (none when the Secret does not exist).
    pub async fn entries(&self) -> Result<BTreeMap<String, String>, kube::Error> {
        let Some(secret) = self.api.get_opt(self.name).await? else {
            return Ok(BTreeMap::new());
        };
        let data = secret.data.unwrap_or_default();
        Ok(data
            .into_iter()
            .filter_map(|(key, value)| Some((key, String::from_utf8(value.0).ok()?)))
            .collect())
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<String>, kube::Error> {
        Ok(self.entries().await?.remove(key))
    }

    /// Sets each key to its value, or removes it for `None`, in one write.
    pub async fn write(&self, changes: BTreeMap<String, Option<String>>) -> Result<(), kube::Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let _one = self.writing.lock().await;
        let data: BTreeMap<&String, Option<ByteString>> = changes
            .iter()
            .map(|(k, v)| (k, v.as_ref().map(|v| ByteString(v.as_bytes().to_vec()))))
            .collect();
        let patch = json!({ "data": data });
        match self
            .api
            .patch(self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let data: BTreeMap<String, ByteString> = changes
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, ByteString(v?.into_bytes()))))
                    .collect();
                if data.is_empty() {
                    return Ok(());
                }
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.name.into()),
                        labels: Some([("app.kubernetes.io/part-of".to_owned(), MANAGER.to_owned())].into()),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &secret).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

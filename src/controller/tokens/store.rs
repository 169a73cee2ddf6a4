//! The [`TokenStore`] of the controller: Vault tokens that own leases, kept in one Secret in the
//! operator's namespace so that a restarted operator or a new leader renews the leases instead of
//! letting them die with a token nobody renews. Never in status, Events or logs.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::MANAGER;
use crate::vault::TokenStore;

/// Name of the Secret, in the operator's namespace.
pub const SECRET_NAME: &str = "vaultsync-lease-tokens";

/// Tokens kept in the Secret [`SECRET_NAME`].
pub struct SecretTokenStore {
    api: Api<Secret>,
    /// Read-modify-write of the Secret one at a time.
    writing: tokio::sync::Mutex<()>,
}

impl SecretTokenStore {
    /// A store in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    async fn write(&self, key: &str, token: Option<&str>) -> Result<(), kube::Error> {
        let _one = self.writing.lock().await;
        let value = token.map(|t| ByteString(t.as_bytes().to_vec()));
        let patch = json!({"data": {key: value}});
        match self
            .api
            .patch(SECRET_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let Some(value) = value else { return Ok(()) };
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(SECRET_NAME.into()),
                        labels: Some([("app.kubernetes.io/part-of".to_owned(), MANAGER.to_owned())].into()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(key.to_owned(), value)])),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &secret).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

impl TokenStore for SecretTokenStore {
    fn load(&self, key: String) -> BoxFuture<'_, Option<String>> {
        async move {
            let secret = match self.api.get_opt(SECRET_NAME).await {
                Ok(secret) => secret?,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the kept Vault tokens");
                    return None;
                }
            };
            let bytes = secret.data?.remove(&key)?;
            String::from_utf8(bytes.0).ok()
        }
        .boxed()
    }

    fn save(&self, key: String, value: String) -> BoxFuture<'_, ()> {
        async move {
            if let Err(e) = self.write(&key, Some(&value)).await {
                tracing::warn!(error = %e, "cannot keep the Vault token that owns leases; a restart would re-issue them");
            }
        }
        .boxed()
    }

    fn entries(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        async move {
            let Ok(Some(secret)) = self.api.get_opt(SECRET_NAME).await else {
                return Vec::new();
            };
            let data = secret.data.unwrap_or_default();
            data.into_iter()
                .filter_map(|(key, value)| Some((key, String::from_utf8(value.0).ok()?)))
                .collect()
        }
        .boxed()
    }

    fn remove(&self, key: String) -> BoxFuture<'_, ()> {
        async move {
            if let Err(e) = self.write(&key, None).await {
                tracing::debug!(error = %e, "cannot forget a kept Vault token");
            }
        }
        .boxed()
    }
}

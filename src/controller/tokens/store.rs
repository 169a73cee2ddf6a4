//! The [`TokenStore`] of the controller: Vault tokens that own leases, kept in one Secret in the
//! operator's namespace so that a restarted operator or a new leader renews the leases instead of
//! letting them die with a token nobody renews. Never in status, Events or logs.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::super::secret_map::SecretMap;
use crate::vault::TokenStore;

/// Name of the Secret, in the operator's namespace.
pub const SECRET_NAME: &str = "vaultsync-lease-tokens";

/// The store in the Secret [`SECRET_NAME`] of `namespace`.
pub fn secret_token_store(client: kube::Client, namespace: &str) -> SecretMap {
    SecretMap::new(client, namespace, SECRET_NAME)
}

impl TokenStore for SecretMap {
    fn load(&self, key: String) -> BoxFuture<'_, Option<String>> {
        async move {
            self.get(&key)
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "cannot read the kept Vault tokens"))
                .ok()
                .flatten()
        }
        .boxed()
    }

    fn save(&self, key: String, value: String) -> BoxFuture<'_, ()> {
        async move {
            if let Err(e) = self.write(BTreeMap::from([(key, Some(value))])).await {
                tracing::warn!(error = %e, "cannot keep the Vault token that owns leases; a restart would re-issue them");
            }
        }
        .boxed()
    }

    fn entries(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        async move { SecretMap::entries(self).await.unwrap_or_default().into_iter().collect() }.boxed()
    }

    fn remove(&self, key: String) -> BoxFuture<'_, ()> {
        async move {
            if let Err(e) = self.write(BTreeMap::from([(key, None)])).await {
                tracing::debug!(error = %e, "cannot forget a kept Vault token");
            }
        }
        .boxed()
    }
}

//! Reading KV secrets (engine v1 and v2).

use std::collections::BTreeMap;

use serde_json::Value;
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::client::VaultClient;

use super::{Error, Result};
use crate::api::{KvEngine, KvSource};

/// The content of one KV secret.
pub struct KvSecret {
    /// Top-level keys and their JSON values.
    pub data: BTreeMap<String, Value>,
    /// The version read (KV v2 only).
    pub version: Option<u64>,
}

impl std::fmt::Debug for KvSecret {
    // Never print the data, only its shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSecret")
            .field("keys", &self.data.keys())
            .field("version", &self.version)
            .finish()
    }
}

/// Reads the secret `source` points at.
pub async fn read(client: &VaultClient, source: &KvSource) -> Result<KvSecret> {
    let operation = format!("kv {}/{}", source.mount, source.path);
    let address = client.settings.address.as_str();
    let classify = |e| Error::from_client(e, address, &operation);
    let (data, version) = match source.engine {
        KvEngine::V1 => {
            let res = vaultrs::kv1::get_raw(client, &source.mount, &source.path)
                .await
                .map_err(classify)?;
            (res.data, None)
        }
        KvEngine::V2 => {
            let req = ReadSecretRequest::builder()
                .mount(&source.mount)
                .path(&source.path)
                .version(source.version)
                .build()
                .map_err(|_| Error::Config("the KV request could not be built".into()))?;
            let res = vaultrs::api::exec_with_result(client, req).await.map_err(classify)?;
            (res.data, Some(res.metadata.version))
        }
    };
    match data {
        Value::Object(map) => Ok(KvSecret {
            data: map.into_iter().collect(),
            version,
        }),
        // A deleted or destroyed KV v2 version answers with `data: null`.
        Value::Null => Err(Error::NotFound {
            what: format!("{operation} (deleted version)"),
        }),
        _ => Err(Error::InvalidResponse {
            operation,
            detail: "the secret data is not an object".into(),
        }),
    }
}

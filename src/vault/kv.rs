//! Reading KV secrets (engine v1 and v2).
//!
//! Identical reads — same server, namespace, token, engine, mount, path and version — that are
//! in flight together, or that arrive within [`REUSE_WINDOW`] after one completed, share one
//! request ([`super::coalesce`]): many VaultSecrets reading one path with one identity cost one
//! read per refresh, not one each. While VaultSecrets that make the same read wait in the queue
//! to sync (a bulk of first syncs), the caller's [`Hold`] keeps the result for them, at most
//! [`super::coalesce::MAX_HOLD`]; while more may still arrive (a bulk being applied), it keeps it
//! for first syncs only ([`Age`]): a refresh never uses a value read before it was due.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vaultrs::client::VaultClient;

use super::coalesce::Coalescer;
pub use super::coalesce::{Age, Hold, Keep};
use super::raw::{Raw, send};
use super::{Error, Result};
use crate::api::{KvEngine, KvSource};
use crate::metrics::Metrics;

/// How long a completed read serves identical reads that arrive after it. Short: the result holds
/// secret data, which must not outlive the syncs that asked for it.
pub const REUSE_WINDOW: Duration = Duration::from_secs(1);

/// What makes two reads identical. The token enters only as a SHA-256 hash keyed with random
/// bytes of this process, so the map never holds it (nor anything it could be checked against).
#[derive(Clone, PartialEq, Eq, Hash)]
struct ReadKey {
    address: String,
    namespace: Option<String>,
    token: [u8; 32],
    v2: bool,
    mount: String,
    path: String,
    version: Option<u64>,
}

impl ReadKey {
    fn new(client: &VaultClient, source: &KvSource, key: &[u8; 32]) -> Self {
        let token = Sha256::new()
            .chain_update(key.as_slice())
            .chain_update(client.middle.token.as_bytes())
            .finalize()
            .into();
        ReadKey {
            address: client.settings.address.to_string(),
            namespace: client.middle.namespace.clone(),
            token,
            v2: source.engine == KvEngine::V2,
            mount: source.mount.clone(),
            path: source.path.clone(),
            version: source.version,
        }
    }
}

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

/// KV reads of one operator: identical ones share a request (see the module docs).
pub struct Reads {
    reads: Coalescer<ReadKey, KvSecret>,
    /// Random bytes of this process that key the token's hash in [`ReadKey`].
    key: [u8; 32],
    /// Count the requests actually sent.
    metrics: Metrics,
}

impl Reads {
    pub fn new(metrics: Metrics) -> Self {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        Reads {
            reads: Coalescer::new(REUSE_WINDOW),
            key,
            metrics,
        }
    }

    /// Reads the secret `source` points at, sharing the request with identical reads. Every
    /// caller gets its own copy of the data. [`Age::Fresh`] (a sync someone asked for) reads anew:
    /// a completed read, even one less than [`REUSE_WINDOW`] old, may predate the change they
    /// want. `hold`: whether VaultSecrets that make the same read are waiting to sync.
    pub async fn read(&self, client: &VaultClient, source: &KvSource, age: Age, hold: Hold) -> Result<KvSecret> {
        if age == Age::Fresh {
            return super::observe(&self.metrics, "read", read_once(client, source)).await;
        }
        let shared = self
            .reads
            .get_held(
                ReadKey::new(client, source, &self.key),
                || super::observe(&self.metrics, "read", read_once(client, source)),
                age,
                hold,
            )
            .await?;
        Ok(KvSecret {
            data: shared.data.clone(),
            version: shared.version,
        })
    }
}

/// One request for the secret `source` points at.
async fn read_once(client: &VaultClient, source: &KvSource) -> Result<KvSecret> {
    let operation = format!("kv {}/{}", source.mount, source.path);
    let (mount, path) = (source.mount.trim_matches('/'), source.path.trim_matches('/'));
    let request = match (source.engine, source.version) {
        (KvEngine::V1, _) => format!("{mount}/{path}"),
        (KvEngine::V2, None) => format!("{mount}/data/{path}"),
        (KvEngine::V2, Some(version)) => format!("{mount}/data/{path}?version={version}"),
    };
    let bytes = send(client, &operation, Raw::get(request)).await?;
    let invalid = |detail: &str| Error::InvalidResponse {
        operation: operation.clone(),
        detail: detail.into(),
    };
    let mut body: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("the response is not JSON"))?;
    let (data, version) = match source.engine {
        KvEngine::V1 => (body["data"].take(), None),
        KvEngine::V2 => {
            let version = body["data"]["metadata"]["version"]
                .as_u64()
                .ok_or_else(|| invalid("the response has no metadata.version"))?;
            (body["data"]["data"].take(), Some(version))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::vault::{Connection, client, parse_address};

    fn source(spec: Value) -> KvSource {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn identical_reads_share_a_key_that_tells_tokens_apart_without_holding_them() {
        let conn = Connection {
            address: parse_address("http://127.0.0.1:8200").unwrap(),
            namespace: None,
            ca_pem: None,
        };
        let token = "hvs.token-canary-one";
        let one = client::build(&conn, token, Duration::from_secs(1)).unwrap();
        let two = client::build(&conn, "hvs.token-canary-two", Duration::from_secs(1)).unwrap();
        let app = source(serde_json::json!({"mount": "secret", "path": "app"}));
        let pinned = source(serde_json::json!({"mount": "secret", "path": "app", "version": 3}));
        // What the caller does with the data (keys, renames) does not make the request differ.
        let renamed = source(serde_json::json!({"mount": "secret", "path": "app", "prefix": "db_"}));

        let process = [7; 32];
        let key = ReadKey::new(&one, &app, &process);
        assert!(key == ReadKey::new(&one, &renamed, &process));
        assert!(
            key != ReadKey::new(&two, &app, &process),
            "another token is another read"
        );
        assert!(
            key != ReadKey::new(&one, &pinned, &process),
            "another version is another read"
        );
        assert!(
            key != ReadKey::new(&one, &app, &[8; 32]),
            "keyed by the process's random bytes"
        );
        assert!(
            !key.token.windows(token.len()).any(|w| w == token.as_bytes()),
            "the key must not hold the token"
        );
    }
}

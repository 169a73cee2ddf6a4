//! Keyed hashes of Secret content: change detection without revealing the data.
//!
//! A plain hash of a low-entropy secret (a 6-digit PIN, a dictionary password) can be reversed by
//! brute force by anyone who can read the VaultSecret's status. The hash is therefore an
//! HMAC-SHA256 under a 32-byte key that only the operator holds, kept in a Secret in the
//! operator's namespace so it survives restarts (a new key would change every hash once).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rand::RngCore;
use sha2::Sha256;

const KEY_FIELD: &str = "key";

/// The operator's hashing key.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    /// A key from raw bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads the key from Secret `name` in `namespace`, creating it with a random key if absent.
    /// Concurrent creators (two replicas starting together) converge on whichever was stored.
    pub async fn load_or_create(client: kube::Client, namespace: &str, name: &str) -> Result<Self, kube::Error> {
        let api: Api<Secret> = Api::namespaced(client, namespace);
        loop {
            if let Some(secret) = api.get_opt(name).await? {
                return Self::from_secret(&secret).ok_or_else(|| {
                    kube::Error::Service(format!("Secret {namespace}/{name} has no 32-byte {KEY_FIELD:?} entry").into())
                });
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some([(crate::MANAGED_BY_LABEL.to_owned(), crate::MANAGER.to_owned())].into()),
                    ..Default::default()
                },
                data: Some([(KEY_FIELD.to_owned(), ByteString(key.to_vec()))].into()),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => return Ok(Self(key)),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn from_secret(secret: &Secret) -> Option<Self> {
        let bytes = secret.data.as_ref()?.get(KEY_FIELD)?;
        Some(Self(bytes.0.as_slice().try_into().ok()?))
    }

    /// Hash of Secret data, as shown in `status.secretHash`.
    pub fn data_hash(&self, data: &BTreeMap<String, ByteString>) -> String {
        let mut mac = self.mac(b"data");
        for (key, value) in data {
            feed(&mut mac, key.as_bytes());
            feed(&mut mac, &value.0);
        }
        format!("hmac-sha256:{}", hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    /// Hash of everything vaultsync applies to a Secret, stored on it as an annotation so a
    /// change of type, labels or annotations in the spec is noticed too.
    pub fn applied_hash(
        &self,
        type_: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        data_hash: &str,
    ) -> String {
        let mut mac = self.mac(b"applied");
        feed(&mut mac, type_.as_bytes());
        for map in [labels, annotations] {
            feed(&mut mac, &map.len().to_be_bytes());
            for (k, v) in map {
                feed(&mut mac, k.as_bytes());
                feed(&mut mac, v.as_bytes());
            }
        }
        feed(&mut mac, data_hash.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Hash of a leased source's request (its parameters may be sensitive), shown in status so
    /// a spec edit that leaves the request unchanged keeps the lease.
    pub fn request_hash(&self, request: &[u8]) -> String {
        let mut mac = self.mac(b"request");
        feed(&mut mac, request);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn mac(&self, domain: &[u8]) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        feed(&mut mac, domain);
        mac
    }
}

/// Length-prefixes each field so ("ab","c") and ("a","bc") hash differently.
fn feed(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn the_hash_depends_on_key_value_and_boundaries_but_never_shows_the_value() {
        let key = HashKey::from_bytes([7; 32]);
        let base = key.data_hash(&data(&[("ab", "c")]));
        assert_eq!(base, key.data_hash(&data(&[("ab", "c")])), "stable");
        assert_ne!(base, key.data_hash(&data(&[("a", "bc")])), "field boundaries matter");
        assert_ne!(base, key.data_hash(&data(&[("ab", "d")])), "values matter");
        assert_ne!(
            base,
            HashKey::from_bytes([8; 32]).data_hash(&data(&[("ab", "c")])),
            "keyed"
        );
        assert!(!key.data_hash(&data(&[("pw", "hunter2")])).contains("hunter2"));
    }

    #[test]
    fn the_applied_hash_changes_with_type_labels_and_annotations() {
        let key = HashKey::from_bytes([1; 32]);
        let none = BTreeMap::new();
        let label: BTreeMap<_, _> = [("a".to_string(), "b".to_string())].into();
        let base = key.applied_hash("Opaque", &none, &none, "h");
        assert_ne!(base, key.applied_hash("kubernetes.io/tls", &none, &none, "h"));
        assert_ne!(base, key.applied_hash("Opaque", &label, &none, "h"));
        assert_ne!(
            key.applied_hash("Opaque", &label, &none, "h"),
            key.applied_hash("Opaque", &none, &label, "h")
        );
        assert_ne!(base, key.applied_hash("Opaque", &none, &none, "h2"));
    }
}

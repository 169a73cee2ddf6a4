//! What the VaultSecret watch cache holds of each object: its name and namespace, and the whole
//! (slimmed, [`super::slim`]) object as JSON compressed with zstd against a dictionary of a typical
//! VaultSecret — about 200 bytes in one allocation for a synced one-source VaultSecret, where the
//! decoded object took about 1.4 KiB in some thirty (heaptrack, `docs/benchmarks.md`). A reconcile decodes the object it syncs
//! ([`Packed::unpack`], a few microseconds); the sweeps over every cached object read the two
//! facts they need ([`Packed::holds_leases`], [`Packed::rolls_out`]) without decoding.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};

use crate::api::VaultSecret;

/// Compression level. A synced one-source VaultSecret of 804 bytes: 193 bytes in 4 µs at 3,
/// 169 bytes in 13 µs at 9 (each watch event packs one).
const LEVEL: i32 = 3;

/// Largest object unpacked: the API server stores objects of at most 1.5 MiB.
const MAX_UNPACKED: usize = 4 * 1024 * 1024;

/// The dictionary: a VaultSecret using most fields, then the most common shape — one KV source,
/// synced — last, where zstd's matches cost least. Field order is serialization order.
const DICTIONARY: &str = concat!(
    r#"{"apiVersion":"vaultsync.dev/v1alpha1","kind":"VaultSecret","metadata":{"annotations":{"vaultsync.dev/sync-requested":""},"#,
    r#""creationTimestamp":"2026-01-01T00:00:00Z","finalizers":["vaultsync.dev/revoke-leases"],"generation":1,"#,
    r#""labels":{"app.kubernetes.io/name":"","app.kubernetes.io/part-of":""},"name":"","namespace":"","resourceVersion":"1","#,
    r#""uid":"00000000-0000-0000-0000-000000000000"},"spec":{"vault":{"address":"https://","namespace":"","caSecretRef":{"name":"","key":"ca.crt"}},"#,
    r#""auth":{"kubernetes":{"role":"","serviceAccountName":"","mount":"kubernetes","audiences":["vault"],"tokenExpirationSeconds":600}},"#,
    r#""sources":[{"name":"","kv":{"mount":"secret","path":"","engine":"v2","version":1,"keys":[""],"rename":{},"prefix":""}},"#,
    r#"{"name":"","dynamic":{"mount":"database","path":"creds/","method":"GET","params":{}}},"#,
    r#"{"name":"","pki":{"mount":"pki","role":"","commonName":"","altNames":[""],"ipSans":[""],"ttl":"24h"}}],"#,
    r#""destination":{"name":"","type":"Opaque","labels":{},"annotations":{},"templates":{},"templateOnly":true,"envKeys":true,"takeOver":true},"#,
    r#""refresh":{"interval":"1h","renewalPercent":67,"revokeGracePeriod":"","revokeOnDelete":false},"#,
    r#""rollout":{"auto":true,"targets":[{"kind":"Deployment","name":""}],"debounce":"5s"}},"#,
    r#""status":{"observedGeneration":1,"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"","observedGeneration":1,"reason":"","status":"True","type":"RolloutRestart"}],"#,
    r#""lastSyncTime":"2026-01-01T00:00:00Z","secretName":"","secretHash":"","#,
    r#""sources":[{"name":"","kind":"dynamic","lease":{"id":"database/creds/","issued":"2026-01-01T00:00:00Z","#,
    r#""expiry":"2026-01-01T00:00:00Z","durationSeconds":3600,"renewable":true,"requestHash":"","tokenRef":"","nextAction":"Renew","nextActionTime":"2026-01-01T00:00:00Z"}},"#,
    r#"{"name":"","kind":"pki","lease":{"id":"serial:","issued":"2026-01-01T00:00:00Z","expiry":"2026-01-01T00:00:00Z","#,
    r#""durationSeconds":86400,"renewable":false,"requestHash":"","nextAction":"Rotate","nextActionTime":"2026-01-01T00:00:00Z"}}],"pendingRolloutHash":"","#,
    r#""pendingRevocations":[{"leaseId":"","source":"","revokeAfter":"2026-01-01T00:00:00Z","expiry":"2026-01-01T00:00:00Z","tokenRef":""}]}}"#,
    r#"{"apiVersion":"vaultsync.dev/v1alpha1","kind":"VaultSecret","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","#,
    r#""finalizers":["vaultsync.dev/revoke-leases"],"generation":1,"name":"","namespace":"","resourceVersion":"","uid":""},"#,
    r#""spec":{"sources":[{"kv":{"mount":"secret","path":"","engine":"v2"}}],"destination":{},"refresh":{}},"#,
    r#""status":{"observedGeneration":1,"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"Secret  is in sync with 1 source(s)","#,
    r#""observedGeneration":1,"reason":"Synced","status":"True","type":"Ready"}],"lastSyncTime":"2026-01-01T00:00:00Z","secretName":"","#,
    r#""secretHash":"","sources":[{"name":"0","kind":"kv","version":1}]}}"#
);

static ENCODER: LazyLock<zstd::dict::EncoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::EncoderDictionary::copy(DICTIONARY.as_bytes(), LEVEL));
static DECODER: LazyLock<zstd::dict::DecoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICTIONARY.as_bytes()));

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Why an object could not be packed or unpacked (never expected: the bytes are our own).
#[derive(Debug, thiserror::Error)]
#[error("VaultSecret watch cache: {0}")]
pub struct PackError(String);

fn pack_error(e: impl std::fmt::Display) -> PackError {
    PackError(e.to_string())
}

/// A VaultSecret as the watch cache keeps it.
#[derive(Clone, Debug)]
pub struct Packed {
    /// Name and namespace only: what lookups and the controller read.
    metadata: ObjectMeta,
    /// The whole object as JSON, zstd-compressed against [`DICTIONARY`].
    bytes: Box<[u8]>,
    /// Whether its status names a lease or a pending revocation.
    holds_leases: bool,
    /// Whether its `spec.rollout` restarts anything.
    rolls_out: bool,
}

impl Packed {
    /// Packs `vs` (already slimmed).
    pub fn pack(vs: &VaultSecret) -> Result<Packed, PackError> {
        let json = serde_json::to_vec(vs).map_err(pack_error)?;
        let bytes = COMPRESSOR.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some(c) => c,
                None => slot.insert(zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER).map_err(pack_error)?),
            };
            compressor.compress(&json).map_err(pack_error)
        })?;
        let holds_leases = vs.status.as_ref().is_some_and(|s| {
            s.sources.iter().any(|source| source.lease.is_some()) || !s.pending_revocations.is_empty()
        });
        Ok(Packed {
            metadata: ObjectMeta {
                name: vs.metadata.name.clone(),
                namespace: vs.metadata.namespace.clone(),
                ..ObjectMeta::default()
            },
            bytes: bytes.into_boxed_slice(),
            holds_leases,
            rolls_out: vs.spec.rollout.as_ref().is_some_and(|r| r.is_active()),
        })
    }

    /// The VaultSecret as it was packed.
    pub fn unpack(&self) -> Result<VaultSecret, PackError> {
        let json = DECOMPRESSOR.with_borrow_mut(|slot| {
            let decompressor = match slot {
                Some(d) => d,
                None => slot.insert(zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER).map_err(pack_error)?),
            };
            // The frame holds its content size: exactly that much is allocated (`decompress`
            // would otherwise allocate all of its capacity argument).
            let size = zstd::zstd_safe::get_frame_content_size(&self.bytes)
                .ok()
                .flatten()
                .and_then(|size| usize::try_from(size).ok())
                .filter(|size| *size <= MAX_UNPACKED)
                .ok_or_else(|| PackError("no or too large a content size".into()))?;
            decompressor.decompress(&self.bytes, size).map_err(pack_error)
        })?;
        serde_json::from_slice(&json).map_err(pack_error)
    }

    /// Whether its status names a lease or a pending revocation.
    pub fn holds_leases(&self) -> bool {
        self.holds_leases
    }

    /// Whether its `spec.rollout` restarts anything.
    pub fn rolls_out(&self) -> bool {
        self.rolls_out
    }

    /// The key the controller's own bookkeeping uses.
    pub fn key(&self) -> ObjectRef<VaultSecret> {
        ObjectRef::from_obj(self).into_kind_unchecked(())
    }
}

/// A watch event with its VaultSecret packed; `None` (logged) should packing fail.
pub fn pack_event(event: watcher::Event<VaultSecret>) -> Option<watcher::Event<Packed>> {
    let pack = |vs: VaultSecret| match Packed::pack(&vs) {
        Ok(packed) => Some(packed),
        Err(e) => {
            tracing::error!(namespace = vs.namespace(), name = vs.name_any(), error = %e, "VaultSecret watch");
            None
        }
    };
    Some(match event {
        watcher::Event::Apply(vs) => watcher::Event::Apply(pack(vs)?),
        watcher::Event::Delete(vs) => watcher::Event::Delete(pack(vs)?),
        watcher::Event::InitApply(vs) => watcher::Event::InitApply(pack(vs)?),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

/// The cache's key for a VaultSecret key (the same name and namespace).
pub fn cache_key(key: ObjectRef<VaultSecret>) -> ObjectRef<Packed> {
    key.into_kind_unchecked(())
}

impl Resource for Packed {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        VaultSecret::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        VaultSecret::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        VaultSecret::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        VaultSecret::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// kube's controller asks its object type to be deserializable; this one is built by
/// [`Packed::pack`] from the VaultSecret watch, but reads a VaultSecret just as well.
impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let vs = VaultSecret::deserialize(deserializer)?;
        Packed::pack(&vs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(vs: &VaultSecret) -> serde_json::Value {
        serde_json::to_value(vs).unwrap()
    }

    fn synced(name: &str, path: &str) -> VaultSecret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vaultsync.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"name": name, "namespace": "bench-7", "uid": "5f0c2a1e-3b1e-4c7a-9d2e-1a2b3c4d5e6f",
                "resourceVersion": "734512", "generation": 1, "creationTimestamp": "2026-12-08T01:02:03Z",
                "finalizers": ["vaultsync.dev/revoke-leases"]},
            "spec": {"sources": [{"kv": {"mount": "secret", "path": path}}]},
            "status": {"observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced",
                    "message": format!("Secret {name} is in sync with 1 source(s)"),
                    "lastTransitionTime": "2026-12-08T01:02:05Z", "observedGeneration": 1}],
                "lastSyncTime": "2026-12-08T01:02:05Z", "secretName": name,
                "secretHash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "sources": [{"name": "0", "kind": "kv", "version": 3}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_packed_vaultsecret_unpacks_to_the_same_object_in_a_fraction_of_its_json() {
        let vs = synced("app-7", "bench/p123");
        let packed = Packed::pack(&vs).unwrap();
        assert_eq!(json(&packed.unpack().unwrap()), json(&vs));
        assert_eq!(packed.key(), ObjectRef::from_obj(&vs));
        let plain = serde_json::to_vec(&vs).unwrap().len();
        assert!(
            packed.bytes.len() * 4 < plain,
            "{} bytes packed of {plain}",
            packed.bytes.len()
        );
        assert!(!packed.holds_leases() && !packed.rolls_out());
    }

    #[test]
    fn the_sweeps_facts_are_read_without_unpacking() {
        let mut vs = synced("db", "p");
        vs.spec.rollout = serde_json::from_value(serde_json::json!({"auto": true})).unwrap();
        let status = vs.status.as_mut().unwrap();
        status.pending_revocations = serde_json::from_value(serde_json::json!([{"leaseId": "database/creds/x/1",
            "source": "db", "revokeAfter": "2026-12-08T01:02:05Z", "expiry": "2026-12-08T02:02:05Z"}]))
        .unwrap();
        let packed = Packed::pack(&vs).unwrap();
        assert!(packed.holds_leases() && packed.rolls_out());
        assert_eq!(json(&packed.unpack().unwrap()), json(&vs));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let packed = Packed::pack(&synced("db", "p")).unwrap();
        let damaged = |bytes: &[u8]| Packed {
            bytes: bytes.into(),
            ..packed.clone()
        };
        for damaged in [damaged(&packed.bytes[..8]), damaged(b"not zstd at all"), damaged(&[])] {
            let error = damaged.unpack().unwrap_err().to_string();
            assert!(error.starts_with("VaultSecret watch cache: "), "{error}");
        }
    }

    #[test]
    fn the_dictionary_is_a_vaultsecret() {
        let (most, common) = DICTIONARY.split_at(DICTIONARY.find("}}{").unwrap() + 2);
        let vs: VaultSecret = serde_json::from_str(most).unwrap();
        assert_eq!(vs.spec.sources.len(), 3);
        let parsed: VaultSecret = serde_json::from_str(common).unwrap();
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            common,
            "in serialization order"
        );
    }
}

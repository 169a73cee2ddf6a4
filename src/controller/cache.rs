//! What the watch caches keep of each object: only what the controller reads. At 10,000
//! VaultSecrets the two caches are most of the operator's memory (`docs/benchmarks.md`).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::MANAGED_BY_LABEL;
use crate::api::VaultSecret;

/// Written by `kubectl apply`: a second copy of the whole object, never read.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A managed Secret's metadata without managedFields and without the managed-by label (the
/// watch selects on it, so every cached Secret has it; a label map costs about 500 bytes).
pub fn slim_secret(meta: &mut PartialObjectMeta<Secret>) {
    meta.metadata.managed_fields = None;
    if let Some(labels) = &mut meta.metadata.labels {
        labels.remove(MANAGED_BY_LABEL);
        if labels.is_empty() {
            meta.metadata.labels = None;
        }
    }
}

/// Whether a cached Secret's labels include every wanted one (the managed-by label is implied).
pub fn has_labels(meta: &PartialObjectMeta<Secret>, want: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    want.into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != MANAGED_BY_LABEL)
        .all(|(k, v)| meta.labels().get(k) == Some(v))
}

/// A VaultSecret without managedFields and without kubectl's last-applied copy.
pub fn slim_vaultsecret(vs: &mut VaultSecret) {
    vs.metadata.managed_fields = None;
    if let Some(annotations) = &mut vs.metadata.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            vs.metadata.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::api::ObjectMeta;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn a_cached_secret_keeps_its_other_labels_and_still_has_the_managed_one() {
        let mut meta = PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                labels: Some(labels(&[(MANAGED_BY_LABEL, "vaultsync"), ("team", "a")])),
                managed_fields: Some(vec![Default::default()]),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        slim_secret(&mut meta);
        assert_eq!(meta.metadata.labels, Some(labels(&[("team", "a")])));
        assert_eq!(meta.metadata.managed_fields, None);
        let want = labels(&[(MANAGED_BY_LABEL, "vaultsync"), ("team", "a")]);
        assert!(has_labels(&meta, Some(&want)));
        assert!(!has_labels(&meta, Some(&labels(&[("team", "b")]))));

        let mut only_managed = PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                labels: Some(labels(&[(MANAGED_BY_LABEL, "vaultsync")])),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        slim_secret(&mut only_managed);
        assert_eq!(only_managed.metadata.labels, None);
        assert!(has_labels(&only_managed, Some(&labels(&[(MANAGED_BY_LABEL, "vaultsync")]))));
    }

    #[test]
    fn a_cached_vaultsecret_drops_kubectls_copy_and_keeps_its_annotations() {
        let spec = serde_json::json!({"sources": [{"kv": {"mount": "secret", "path": "p"}}]});
        let mut vs = VaultSecret::new("db", serde_json::from_value(spec).unwrap());
        vs.metadata.annotations = Some(labels(&[(LAST_APPLIED, "{...}"), ("note", "x")]));
        slim_vaultsecret(&mut vs);
        assert_eq!(vs.metadata.annotations, Some(labels(&[("note", "x")])));
        vs.metadata.annotations = Some(labels(&[(LAST_APPLIED, "{...}")]));
        slim_vaultsecret(&mut vs);
        assert_eq!(vs.metadata.annotations, None);
    }
}

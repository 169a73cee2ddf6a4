//! What the VaultSecret watch cache keeps of each object: what the controller reads, packed
//! ([`super::packed`]). At 10,000 VaultSecrets this cache is the largest part of the operator's
//! memory (`docs/benchmarks.md`); the managed Secrets' metadata is kept in [`super::owned`].

use crate::SYNC_REQUESTED_ANNOTATION;
use crate::api::VaultSecret;

/// Written by `kubectl apply`: a second copy of the whole object, never read.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A VaultSecret without managedFields and without kubectl's last-applied copy. Its labels and
/// annotations are read only as template variables (`sources::shape`), so a VaultSecret without
/// templates is kept without them (less to compress, to hold and to decode at each reconcile) —
/// but for [`SYNC_REQUESTED_ANNOTATION`], which the scheduler reads.
pub fn slim_vaultsecret(vs: &mut VaultSecret) {
    vs.metadata.managed_fields = None;
    if vs.spec.destination.templates.is_empty() {
        vs.metadata.labels = None;
        let requested = vs
            .metadata
            .annotations
            .as_mut()
            .and_then(|a| a.remove_entry(SYNC_REQUESTED_ANNOTATION));
        vs.metadata.annotations = requested.map(|pair| [pair].into());
    } else if let Some(annotations) = &mut vs.metadata.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            vs.metadata.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn a_cached_vaultsecret_keeps_labels_and_annotations_only_for_its_templates() {
        let spec = serde_json::json!({"sources": [{"kv": {"mount": "secret", "path": "p"}}]});
        let mut vs = VaultSecret::new("db", serde_json::from_value(spec).unwrap());
        vs.metadata.labels = Some(labels(&[("team", "a")]));
        vs.metadata.annotations = Some(labels(&[(LAST_APPLIED, "{...}"), ("note", "x")]));
        vs.metadata.managed_fields = Some(vec![Default::default()]);
        let mut templated = vs.clone();
        templated.spec.destination.templates = labels(&[("url", "{{ password }}")]);

        let mut requested = vs.clone();
        slim_vaultsecret(&mut vs);
        assert_eq!((vs.metadata.labels, vs.metadata.annotations), (None, None));
        assert_eq!(vs.metadata.managed_fields, None);
        requested.metadata.annotations = Some(labels(&[("note", "x"), (SYNC_REQUESTED_ANNOTATION, "2")]));
        slim_vaultsecret(&mut requested);
        assert_eq!(
            requested.metadata.annotations,
            Some(labels(&[(SYNC_REQUESTED_ANNOTATION, "2")])),
            "the scheduler reads it"
        );

        slim_vaultsecret(&mut templated);
        assert_eq!(templated.metadata.labels, Some(labels(&[("team", "a")])));
        assert_eq!(templated.metadata.annotations, Some(labels(&[("note", "x")])));
        templated.metadata.annotations = Some(labels(&[(LAST_APPLIED, "{...}")]));
        slim_vaultsecret(&mut templated);
        assert_eq!(templated.metadata.annotations, None);
    }
}

//! What the VaultSecret watch cache keeps of each object: what the controller reads. At 10,000
//! VaultSecrets this cache is the largest part of the operator's memory (`docs/benchmarks.md`);
//! the managed Secrets' metadata is kept in [`super::owned`].

use crate::api::VaultSecret;

/// Written by `kubectl apply`: a second copy of the whole object, never read.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
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

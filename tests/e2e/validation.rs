//! Invalid manifests are rejected by the API server with a message naming the field.

use serde_json::{Value, json};

use crate::common::TestNs;

async fn rejection(t: &TestNs, name: &str, spec: Value) -> String {
    match t.create_vs(name, spec).await {
        Ok(_) => panic!("{name}: the API server accepted an invalid VaultSecret"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{name}: {status:?}");
            status.message
        }
        Err(e) => panic!("{name}: unexpected error {e}"),
    }
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_the_field_named() {
    let t = TestNs::new("invalid").await;
    let kv = json!({"mount": "secret", "path": "p"});
    let cases = [
        ("no-sources", json!({"destination": {"name": "x"}}), "spec.sources"),
        ("empty-sources", json!({"sources": []}), "spec.sources"),
        (
            "no-kind",
            json!({"sources": [{"name": "a"}]}),
            "each source sets exactly one kind",
        ),
        (
            "same-names",
            json!({"sources": [{"name": "a", "kv": kv}, {"name": "a", "kv": kv}]}),
            "source names must be unique",
        ),
        (
            "bad-engine",
            json!({"sources": [{"kv": {"mount": "secret", "path": "p", "engine": "v3"}}]}),
            "spec.sources[0].kv.engine",
        ),
        (
            "no-path",
            json!({"sources": [{"kv": {"mount": "secret"}}]}),
            "spec.sources[0].kv.path",
        ),
        (
            "v1-version",
            json!({"sources": [{"kv": {"mount": "secret", "path": "p", "engine": "v1", "version": 2}}]}),
            "version can only be pinned for engine v2",
        ),
        (
            "bad-duration",
            json!({"sources": [{"kv": kv}], "refresh": {"interval": "soon"}}),
            "spec.refresh.interval",
        ),
        (
            "short-interval",
            json!({"sources": [{"kv": kv}], "refresh": {"interval": "1s"}}),
            "refresh.interval must be at least 10s",
        ),
        (
            "empty-dest",
            json!({"sources": [{"kv": kv}], "destination": {"name": ""}}),
            "spec.destination.name",
        ),
        (
            "bad-dest",
            json!({"sources": [{"kv": kv}], "destination": {"name": "Not_A_Name"}}),
            "spec.destination.name",
        ),
        (
            "sa-token",
            json!({"sources": [{"kv": kv}], "destination": {"type": "kubernetes.io/service-account-token"}}),
            "privileged Secret types",
        ),
        (
            "bad-address",
            json!({"sources": [{"kv": kv}], "vault": {"address": "vault:8200"}}),
            "spec.vault.address",
        ),
    ];
    for (name, spec, expected) in cases {
        let message = rejection(&t, name, spec).await;
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
    }
}

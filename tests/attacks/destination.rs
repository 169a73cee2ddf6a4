//! The destination may be no Secret the operator keeps for itself: a leases Secret (its own or
//! another VaultSecret's) or, in the operator's namespace, the hash key and the kept tokens.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use crate::address::rand_suffix;
use crate::common::OPERATOR_NS;
use crate::common::TestNs;
use crate::{assert_schema_refuses, kubernetes_auth, mallory, op};

#[tokio::test]
async fn a_leases_secret_is_never_a_destination() {
    let t = mallory("leases-destination").await;
    let sources = json!([{"kv": {"mount": "secret", "path": t.path("x")}}]);
    let spec =
        json!({"auth": kubernetes_auth(&t), "sources": sources, "destination": {"name": "other.vaultsync-leases"}});
    assert_schema_refuses(&t, "named", spec, "lease Secrets").await;
    let own = json!({"app.kubernetes.io/managed-by": "vaultsync"});
    let spec = json!({"auth": kubernetes_auth(&t), "sources": sources, "destination": {"labels": own}});
    assert_schema_refuses(&t, "labels", spec, "are the operator's").await;
    let own = json!({"vaultsync.dev/applied-hash": "x"});
    let spec = json!({"auth": kubernetes_auth(&t), "sources": sources, "destination": {"annotations": own}});
    assert_schema_refuses(&t, "annotations", spec, "are the operator's").await;
    // The default destination name is the VaultSecret's own name.
    let spec = json!({"auth": kubernetes_auth(&t), "sources": sources});
    t.create_vs("other.vaultsync-leases", spec)
        .await
        .expect("create VaultSecret");
    t.wait_ready("other.vaultsync-leases", "False", "DestinationNotAllowed")
        .await;
}

#[tokio::test]
async fn the_operators_own_secrets_cannot_be_taken_over() {
    let t = TestNs::fixed_in(op(), OPERATOR_NS).await;
    let secrets: Api<Secret> = Api::namespaced(t.client.clone(), OPERATOR_NS);
    let key = secrets.get("vaultsync-hash-key").await.expect("the hash key Secret");
    let name = format!("hash-key-{}", rand_suffix());
    let spec = json!({
        "sources": [{"kv": {"mount": "secret", "path": "x"}}],
        "destination": {"name": "vaultsync-hash-key", "takeOver": true},
    });
    t.create_vs(&name, spec).await.expect("create VaultSecret");
    t.wait_ready(&name, "False", "DestinationNotAllowed").await;
    let after = secrets.get("vaultsync-hash-key").await.expect("the hash key Secret");
    assert_eq!(after.metadata.resource_version, key.metadata.resource_version);
    t.delete_vs(&name).await;
}

/// A kept value names the address its token is revoked at; an address the administrator does not
/// allow is not contacted even so: the token is only forgotten.
#[tokio::test]
async fn a_kept_token_for_a_foreign_address_is_forgotten_without_contacting_it() {
    let t = TestNs::fixed_in(op(), OPERATOR_NS).await;
    let key = format!("planted-{}", rand_suffix());
    let value = json!({"v": 1, "address": crate::foreign().url(), "token": "planted-token"}).to_string();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let patch = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "vaultsync-lease-tokens"},
        "data": {&key: b64(&value)},
    });
    let secrets: Api<Secret> = Api::namespaced(t.client.clone(), OPERATOR_NS);
    let apply = kube::api::PatchParams::apply("tests-planted");
    secrets
        .patch("vaultsync-lease-tokens", &apply, &kube::api::Patch::Apply(&patch))
        .await
        .expect("plant a kept token");
    crate::common::restart_operator().await;
    crate::common::within_for(
        std::time::Duration::from_secs(120),
        "the planted token to be dropped",
        async {
            loop {
                let secret = secrets.get("vaultsync-lease-tokens").await.expect("get Secret");
                if !secret.data.unwrap_or_default().contains_key(&key) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        },
    )
    .await;
    assert_eq!(
        crate::foreign().connections(),
        0,
        "the foreign address was contacted: {:?}",
        crate::foreign().request_lines()
    );
}

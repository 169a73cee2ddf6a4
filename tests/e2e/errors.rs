//! Failures get a precise reason, stay contained to their object, and never reveal a value.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::common::{TestNs, captured_logs, has_value};

#[tokio::test]
async fn a_missing_path_is_not_found_while_a_vaultsecret_applied_with_it_syncs() {
    let t = TestNs::new("missing").await;
    t.op.bao.put(&t.path("present"), &[("k", "present")]);
    let missing = json!({"sources": [{"kv": {"mount": "secret", "path": t.path("absent")}}]});
    let present = json!({"sources": [{"kv": {"mount": "secret", "path": t.path("present")}}]});
    t.create_vs("missing", missing).await.expect("create missing");
    t.create_vs("present", present).await.expect("create present");

    t.wait_secret("present", "the healthy VaultSecret's Secret", has_value("k", "present"))
        .await;
    t.wait_ready("present", "True", "Synced").await;
    let vs = t.wait_ready("missing", "False", "NotFound").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(
        message.contains(&t.path("absent")),
        "the message names the path: {message}"
    );
    assert!(
        t.secrets().get_opt("missing").await.expect("get").is_none(),
        "no Secret for a failed first sync"
    );

    // The missing path appears: the retry backoff picks it up without any spec change.
    t.op.bao.put(&t.path("absent"), &[("k", "late")]);
    t.wait_secret("missing", "the late secret", has_value("k", "late"))
        .await;
}

#[tokio::test]
async fn a_missing_key_is_reported_by_name() {
    let t = TestNs::new("nokey").await;
    t.op.bao.put(&t.path("s"), &[("a", "1")]);
    t.create_vs(
        "s",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("s"), "keys": ["a", "b"]}}]}),
    )
    .await
    .expect("create");
    let vs = t.wait_ready("s", "False", "KeyNotFound").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("\"b\""), "{message}");
}

#[tokio::test]
async fn a_missing_ca_secret_is_reported() {
    let t = TestNs::new("ca").await;
    // A namespace identity: the operator's own token is never used with a CA of the author's.
    let spec = json!({
        "vault": {"caSecretRef": {"name": "vault-ca", "key": "ca.crt"}},
        "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}},
        "sources": [{"kv": {"mount": "secret", "path": "x"}}],
    });
    t.create_vs("ca", spec).await.expect("create");
    let vs = t.wait_ready("ca", "False", "CASecretInvalid").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("vault-ca"), "{message}");
}

#[tokio::test]
async fn known_secret_values_never_appear_in_status_events_or_logs() {
    let t = TestNs::new("leak").await;
    const VALUE: &str = "Known-Leak-Canary-7f3a9c";
    t.op.bao
        .put(&t.path("canary"), &[("password", VALUE), ("bad key!", VALUE)]);
    t.op.bao.put(&t.path("good"), &[("password", VALUE)]);
    // One that fails after reading the data (invalid key), one that succeeds.
    t.create_vs(
        "bad",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("canary")}}]}),
    )
    .await
    .expect("create bad");
    t.create_vs(
        "good",
        json!({"sources": [{"kv": {"mount": "secret", "path": t.path("good")}}]}),
    )
    .await
    .expect("create good");
    t.wait_ready("bad", "False", "InvalidKey").await;
    t.wait_secret("good", "good Secret", has_value("password", VALUE)).await;
    let good = t.wait_ready("good", "True", "Synced").await;

    let status = serde_json::to_string(&good.status).expect("status json");
    let bad = t.vaultsecrets().get("bad").await.expect("get bad");
    let bad_status = serde_json::to_string(&bad.status).expect("status json");
    let events = Api::<Event>::namespaced(t.client.clone(), &t.ns)
        .list(&ListParams::default())
        .await
        .expect("events");
    let events = serde_json::to_string(&events.items).expect("events json");
    assert!(events.contains("InvalidKey"), "events were emitted: {events}");
    for (place, text) in [
        ("status", status),
        ("status", bad_status),
        ("events", events),
        ("operator logs", captured_logs()),
    ] {
        assert!(!text.contains(VALUE), "secret value found in {place}");
    }
}

#[tokio::test]
async fn a_source_deleted_in_vault_leaves_the_secret_untouched_and_says_not_found() {
    let t = TestNs::new("deleted").await;
    let path = t.path("gone");
    t.op.bao.put(&path, &[("k", "kept")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": "10s"}});
    t.create_vs("gone", spec).await.expect("create");
    let before = t.wait_secret("gone", "first sync", has_value("k", "kept")).await;

    t.op.bao.run(&["kv", "metadata", "delete", "-mount=secret", &path]);
    let vs = t.wait_ready("gone", "False", "NotFound").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("keeps its last synced content"), "{message}");
    let after = t.secrets().get("gone").await.expect("the Secret is still there");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
}

//! KV secrets become Secrets, follow changes, and are not rewritten when nothing changed.

use serde_json::json;

use crate::common::auth::kv_reads;
use crate::common::{TestNs, has_value, value};

#[tokio::test]
async fn a_kv2_secret_becomes_a_secret_within_seconds_and_kubectl_shows_ready() {
    let t = TestNs::new("kv2").await;
    t.op.bao
        .put(&t.path("app"), &[("username", "shop"), ("password", "s3cr3t-kv2")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": t.path("app")}}], "refresh": {"interval": "1h"}});
    t.create_vs("app", spec).await.expect("create VaultSecret");

    let secret = t
        .wait_secret(
            "app",
            "Secret app with the KV data",
            has_value("password", "s3cr3t-kv2"),
        )
        .await;
    assert_eq!(value(&secret, "username").as_deref(), Some("shop"));
    assert_eq!(secret.data.as_ref().map(|d| d.len()), Some(2), "exactly the KV keys");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let vs = t.wait_ready("app", "True", "Synced").await;
    let status = vs.status.expect("status");
    assert_eq!(status.sources[0].version, Some(1), "KV v2 version in status");
    assert!(
        status
            .secret_hash
            .as_deref()
            .is_some_and(|h| h.starts_with("hmac-sha256:"))
    );

    let table = t.kubectl(&["get", "vsec", "app"]);
    let row = table.lines().nth(1).expect("a row for app");
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..4] == ["app", "True", "Synced", "app"],
        "kubectl get vs: {table}"
    );
}

#[tokio::test]
async fn a_changed_value_follows_at_the_refresh_with_an_event_and_unchanged_refreshes_write_nothing() {
    let t = TestNs::new("refresh").await;
    let path = t.path("cfg");
    t.op.bao.put(&path, &[("token", "first")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": "10s"}});
    t.create_vs("cfg", spec).await.expect("create VaultSecret");
    let first = t.wait_secret("cfg", "first value", has_value("token", "first")).await;
    let synced = t.wait_ready("cfg", "True", "Synced").await;

    // Two refreshes with nothing changed: OpenBao's audit log shows the reads, the Secret and
    // the VaultSecret keep their resourceVersion.
    t.wait_reads(&path, 2).await;
    let secret = t.secrets().get("cfg").await.expect("get Secret");
    assert_eq!(
        secret.metadata.resource_version, first.metadata.resource_version,
        "Secret rewritten on an unchanged refresh"
    );
    let vs = t.vaultsecrets().get("cfg").await.expect("get VaultSecret");
    assert_eq!(
        vs.metadata.resource_version, synced.metadata.resource_version,
        "status rewritten on an unchanged refresh"
    );

    t.op.bao.put(&path, &[("token", "second")]);
    t.wait_secret("cfg", "the new value after a refresh", has_value("token", "second"))
        .await;
    let vs = t
        .wait_vs("cfg", "status version 2", |vs: Option<&vaultsync::api::VaultSecret>| {
            vs.and_then(|v| v.status.as_ref())
                .is_some_and(|s| s.sources.first().and_then(|s| s.version) == Some(2))
        })
        .await;
    assert_ne!(
        vs.status.and_then(|s| s.secret_hash),
        synced.status.and_then(|s| s.secret_hash),
        "hash follows the content"
    );
    // The change was written before the status: its Event exists. The first write has none
    // (the Ready condition tells it).
    let written = t.events("SecretWritten").await;
    assert_eq!(written.len(), 1, "one SecretWritten Event, for the change: {written:?}");
    assert_eq!(written[0].message.as_deref(), Some("Wrote Secret cfg"));
}

#[tokio::test]
async fn a_kv1_source_is_synced() {
    let t = TestNs::new("kv1").await;
    t.op.bao.put_in("kv1", &t.path("legacy"), &[("api_key", "v1-value")]);
    let spec = json!({"sources": [{"kv": {"mount": "kv1", "path": t.path("legacy"), "engine": "v1"}}]});
    t.create_vs("legacy", spec).await.expect("create VaultSecret");
    t.wait_secret("legacy", "KV v1 data", has_value("api_key", "v1-value"))
        .await;
    let vs = t.wait_ready("legacy", "True", "Synced").await;
    assert_eq!(
        vs.status.expect("status").sources[0].version,
        None,
        "KV v1 has no version"
    );
}

#[tokio::test]
async fn a_pinned_kv2_version_stays_while_newer_versions_are_written() {
    let t = TestNs::new("pinned").await;
    let path = t.path("pinned");
    t.op.bao.put(&path, &[("v", "one")]);
    t.op.bao.put(&path, &[("v", "two")]);
    let spec =
        json!({"sources": [{"kv": {"mount": "secret", "path": path, "version": 1}}], "refresh": {"interval": "10s"}});
    t.create_vs("pinned", spec).await.expect("create VaultSecret");
    t.wait_secret("pinned", "version 1", has_value("v", "one")).await;
    let vs = t.wait_ready("pinned", "True", "Synced").await;
    assert_eq!(vs.status.expect("status").sources[0].version, Some(1));
}

#[tokio::test]
async fn two_sources_merge_in_order_with_key_selection_and_the_duplicate_is_reported() {
    let t = TestNs::new("merge").await;
    t.op.bao.put(
        &t.path("base"),
        &[("user", "app"), ("password", "base-pw"), ("unused", "x")],
    );
    t.op.bao
        .put(&t.path("override"), &[("password", "override-pw"), ("extra", "e")]);
    let spec = json!({"sources": [
        {"name": "base", "kv": {"mount": "secret", "path": t.path("base"), "keys": ["user", "password"]}},
        {"name": "override", "kv": {"mount": "secret", "path": t.path("override")}},
    ]});
    t.create_vs("merged", spec).await.expect("create VaultSecret");
    let secret = t
        .wait_secret("merged", "merged data", has_value("password", "override-pw"))
        .await;
    let keys: Vec<_> = secret.data.as_ref().expect("data").keys().cloned().collect();
    assert_eq!(keys, ["extra", "password", "user"]);
    let vs = t.wait_ready("merged", "True", "Synced").await;
    let message = vs
        .status
        .and_then(|s| s.ready().map(|c| c.message.clone()))
        .expect("message");
    assert!(
        message.contains("password (source base overridden by override)"),
        "{message}"
    );
    assert!(
        !message.contains("override-pw") && !message.contains("base-pw"),
        "values in message: {message}"
    );
}

/// `kubectl annotate` of VaultSecret `name` with `annotation` (`key=value`).
fn annotate(t: &TestNs, name: &str, annotation: &str) {
    t.kubectl(&["annotate", "vaultsecret", name, annotation, "--overwrite"]);
}

#[tokio::test]
async fn each_new_sync_requested_value_reads_vault_at_once_and_only_once() {
    let t = TestNs::new("force").await;
    let bao = &t.op.bao;
    let path = t.path("app");
    bao.put(&path, &[("k", "v1")]);
    let spec = json!({"sources": [{"kv": {"mount": "secret", "path": path}}], "refresh": {"interval": "1h"}});
    t.create_vs("app", spec).await.expect("create VaultSecret");
    t.wait_secret("app", "the first sync", has_value("k", "v1")).await;
    t.wait_ready("app", "True", "Synced").await;

    // The next refresh is an hour away: the request makes it now.
    bao.put(&path, &[("k", "v2")]);
    annotate(&t, "app", "vaultsync.dev/sync-requested=1");
    t.wait_secret("app", "the requested sync", has_value("k", "v2")).await;
    let reads = kv_reads(bao, &t.ns).len();

    // Another annotation, and the same value again: no read. A new value: exactly one.
    annotate(&t, "app", "team=payments");
    annotate(&t, "app", "vaultsync.dev/sync-requested=1");
    bao.put(&path, &[("k", "v3")]);
    annotate(&t, "app", "vaultsync.dev/sync-requested=2");
    t.wait_secret("app", "the second requested sync", has_value("k", "v3"))
        .await;
    assert_eq!(
        kv_reads(bao, &t.ns).len(),
        reads + 1,
        "one read for the new value, none for the repeated one or the other annotation"
    );
}

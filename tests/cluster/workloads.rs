//! Workloads that really consume the Secrets: a Deployment's pod reads the synced Secret through
//! `envFrom` and a `secret` volume; a rotation with `spec.rollout` replaces the pod once, and
//! without it the mounted file follows in place.

use std::time::Duration;

use serde_json::json;

use crate::cluster;
use crate::common::auth::{kubernetes_role, read_policy};
use crate::common::pods::tools_deployment;
use crate::common::{TestNs, has_value};

/// Prints the variable once (it is fixed at container start) and the mounted file every second.
const PRINT_BOTH: &str = r#"echo "env=$password"; while true; do echo "file=$(cat /secret/password)"; sleep 1; done"#;

const CONSUME: &str = r#"          envFrom: [{secretRef: {name: app-secrets}}]
          volumeMounts: [{name: secrets, mountPath: /secret, readOnly: true}]"#;
const VOLUME: &str = r#"      volumes: [{name: secrets, secret: {secretName: app-secrets}}]"#;

/// A namespace whose ServiceAccount `app` may read `secret/<ns>/*` through Kubernetes auth, and a
/// VaultSecret `app-secrets` of `secret/<ns>/app` (password `first`), Ready.
async fn synced(prefix: &str, rollout: bool) -> TestNs {
    synced_with(prefix, &[("password", "first")], rollout).await
}

/// Like [`synced`], with `data` at `secret/<ns>/app`.
async fn synced_with(prefix: &str, data: &[(&str, &str)], rollout: bool) -> TestNs {
    let op = cluster();
    let t = TestNs::new_in(op, prefix).await;
    read_policy(&op.bao, &t.ns, &t.ns);
    kubernetes_role(&op.bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    op.bao.put(&t.path("app"), data);
    let mut spec = json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"kv": {"mount": "secret", "path": t.path("app")}}],
        "refresh": {"interval": "10s"},
    });
    if rollout {
        spec["rollout"] = json!({"targets": [{"kind": "Deployment", "name": "app"}]});
    }
    t.create_vs("app-secrets", spec).await.expect("create VaultSecret");
    t.wait_ready("app-secrets", "True", "Synced").await;
    t
}

#[tokio::test]
async fn a_rotation_with_rollout_replaces_the_pod_once_and_the_new_pod_reads_the_new_value() {
    let t = synced("rollout", true).await;
    let app = tools_deployment(&t.ns, "app", PRINT_BOTH, CONSUME, VOLUME);
    crate::common::kubectl_apply(t.op.env, &app, "create Deployment app");
    let first = t.wait_one_pod("app", &[]).await;
    t.wait_printed(&first, "env=first", crate::POD_TIMEOUT).await;
    t.wait_printed(&first, "file=first", crate::POD_TIMEOUT).await;
    assert_eq!(t.replica_sets("app").len(), 1, "one ReplicaSet before the rotation");

    t.op.bao.put(&t.path("app"), &[("password", "second")]);
    let second = t.wait_one_pod("app", std::slice::from_ref(&first)).await;
    t.wait_printed(&second, "env=second", crate::POD_TIMEOUT).await;
    t.wait_printed(&second, "file=second", crate::POD_TIMEOUT).await;
    t.wait_pod_gone("app", &first).await;
    // Several refreshes after the rotation: still exactly one new ReplicaSet.
    t.wait_reads(&t.path("app"), 2).await;
    let sets = t.replica_sets("app");
    assert_eq!(sets.len(), 2, "exactly one new ReplicaSet for one rotation: {sets:?}");
    assert_eq!(t.pods("app"), [second], "only the new pod runs");
}

#[tokio::test]
async fn without_rollout_the_mounted_file_follows_in_place_and_the_pod_stays() {
    let t = synced("volume", false).await;
    let app = tools_deployment(&t.ns, "app", PRINT_BOTH, CONSUME, VOLUME);
    crate::common::kubectl_apply(t.op.env, &app, "create Deployment app");
    let pod = t.wait_one_pod("app", &[]).await;
    t.wait_printed(&pod, "file=first", crate::POD_TIMEOUT).await;

    t.op.bao.put(&t.path("app"), &[("password", "second")]);
    t.wait_secret(
        "app-secrets",
        "the Secret to follow OpenBao",
        has_value("password", "second"),
    )
    .await;
    // Timed from the moment the Secret was seen changed. The kubelet refreshes secret volumes on its sync period (1 min by default) plus its cache's
    // TTL: allow two periods.
    let took = t.wait_printed(&pod, "file=second", Duration::from_secs(150)).await;
    eprintln!(
        "the mounted file followed the Secret {:.1} s after it changed (kubelet defaults)",
        took.as_secs_f64()
    );
    assert_eq!(t.pods("app"), std::slice::from_ref(&pod), "the pod was not replaced");
    assert_eq!(t.replica_sets("app").len(), 1, "no new ReplicaSet without spec.rollout");
    let printed = t.printed(&pod);
    assert!(
        printed.iter().any(|l| l == "env=first") && !printed.iter().any(|l| l == "env=second"),
        "the environment stays as the container started: {printed:?}"
    );
}

#[tokio::test]
async fn envfrom_passes_keys_a_shell_cannot_expand() {
    // Kubernetes 1.34: `db.password` (allowed since 1.8) and `2fa` (since 1.32) both reach the
    // container; the KeysNotShellNames Warning says so rather than that envFrom skips them.
    let t = synced_with("shellnames", &[("db.password", "dotted"), ("2fa", "digit")], false).await;
    let op = t.op;
    let script = r#"echo "received=$(tr '\000' '\n' < /proc/1/environ | grep -c -e '^db\.password=dotted$' -e '^2fa=digit$')"; sleep 100000"#;
    let consume = "          envFrom: [{secretRef: {name: app-secrets}}]";
    crate::common::kubectl_apply(
        op.env,
        &tools_deployment(&t.ns, "app", script, consume, ""),
        "create Deployment app",
    );
    let pod = t.wait_one_pod("app", &[]).await;
    t.wait_printed(&pod, "received=2", crate::POD_TIMEOUT).await;
    let events = t.kubectl(&["get", "events", "-o", "json"]);
    assert!(events.contains("KeysNotShellNames"), "{events}");
}

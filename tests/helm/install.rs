//! `helm install` of the chart on the environment's node.

use std::time::Duration;

use serde_json::json;

use crate::common::auth::{kubernetes_role, read_policy};
use crate::common::cluster::helm_installed;
use crate::common::{Operator, TestNs, has_value, poll_for};

/// The release namespace, created by `helm install --create-namespace`.
const RELEASE_NS: &str = "vaultsync-helm";

fn operator() -> &'static Operator {
    helm_installed(RELEASE_NS)
}

/// A namespace whose VaultSecret `app` reads `secret/<ns>/app` as ServiceAccount `app`.
async fn synced(op: &'static Operator, prefix: &str) -> TestNs {
    let t = TestNs::new_in(op, prefix).await;
    read_policy(&op.bao, &t.ns, &t.ns);
    kubernetes_role(&op.bao, &t.ns, &t.ns, "app", &t.ns, &[]);
    t.create_service_account("app").await;
    op.bao.put(&t.path("app"), &[("password", "from-the-helm-install")]);
    t.create_vs("app", spec(&t)).await.expect("create VaultSecret");
    t.wait_ready("app", "True", "Synced").await;
    t.wait_secret(
        "app",
        "the synced Secret",
        has_value("password", "from-the-helm-install"),
    )
    .await;
    t
}

fn spec(t: &TestNs) -> serde_json::Value {
    json!({
        "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
        "sources": [{"kv": {"mount": "secret", "path": t.path("app")}}],
    })
}

#[tokio::test]
async fn the_helm_installed_operator_is_ready_and_syncs_a_secret() {
    let op = operator();
    let (code, _) = op.get("/readyz").await;
    assert_eq!(code, 200, "/readyz of the helm-installed operator");
    let pdb = op
        .env
        .kubectl()
        .args(["get", "pdb", "-n", RELEASE_NS, "-o", "name"])
        .output()
        .unwrap();
    // One replica here: the chart adds its PodDisruptionBudget only for more than one.
    assert_eq!(String::from_utf8_lossy(&pdb.stdout).trim(), "");
    synced(op, "helm").await;
}

/// `kubectl --as USER` in `t`'s namespace: (success, stdout, stderr).
fn kubectl_as(t: &TestNs, user: &str, args: &[&str]) -> (bool, String, String) {
    let out =
        t.op.env
            .kubectl()
            .args(["--as", user, "-n", &t.ns])
            .args(args)
            .output()
            .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn namespace_editors_create_vaultsecrets_and_viewers_read_them_without_a_secret_value() {
    let op = operator();
    let t = synced(op, "roles").await;
    t.kubectl(&[
        "create",
        "rolebinding",
        "alice-edit",
        "--clusterrole=edit",
        "--user=alice",
    ]);
    t.kubectl(&["create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob"]);

    // The aggregation controller adds the chart's rules to edit and view asynchronously.
    let manifest = json!({
        "apiVersion": "vaultsync.dev/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": "by-alice"},
        "spec": spec(&t),
    });
    let path = op.env.dir.join(format!("{}-by-alice.json", t.ns));
    std::fs::write(&path, manifest.to_string()).unwrap();
    let path = path.to_str().unwrap();
    poll_for(
        "an `edit` user to create a VaultSecret",
        Duration::from_secs(30),
        async || kubectl_as(&t, "alice", &["create", "-f", path]).0.then_some(()),
    )
    .await;
    t.wait_ready("by-alice", "True", "Synced").await;

    let (ok, listed, stderr) = kubectl_as(&t, "bob", &["get", "vaultsecrets", "-o", "json"]);
    assert!(ok, "a `view` user cannot read VaultSecrets: {stderr}");
    assert!(listed.contains("by-alice"), "{listed}");
    assert!(
        !listed.contains("from-the-helm-install"),
        "a VaultSecret shows a synced value to a viewer"
    );
    let (ok, _, stderr) = kubectl_as(&t, "bob", &["get", "secret", "app", "-o", "json"]);
    assert!(
        !ok && stderr.contains("forbidden"),
        "a `view` user read the synced Secret: {stderr}"
    );
    let (ok, _, stderr) = kubectl_as(&t, "bob", &["delete", "vaultsecret", "by-alice"]);
    assert!(
        !ok && stderr.contains("forbidden"),
        "a `view` user deleted a VaultSecret: {stderr}"
    );
}

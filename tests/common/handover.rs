//! Leader election among operator pods: deleting the leader pod hands over to another replica
//! without a Secret write or a re-issued lease (`tests/namespaced`, `tests/replicas`).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::json;

use super::auth::{kubernetes_role, read_policy};
use super::{Operator, TestNs, db, kubectl, poll_for, value};

/// The leader-election Lease in the operator's namespace.
const LEASE: &str = "vaultsync-leader";

/// The holder of the leader-election Lease in `operator_ns`, if any.
async fn holder(t: &TestNs, operator_ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), operator_ns);
    leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity
}

/// Deletes the leader pod of the operator (running with two replicas in `operator_ns`) while
/// VaultSecrets with a KV and a leased source in `t`'s namespace are synced, and asserts that
/// another replica takes over without rewriting their Secrets or issuing another lease, and then
/// syncs a change.
pub async fn deleting_the_leader_pod_hands_over(op: &'static Operator, operator_ns: &str, t: &TestNs) {
    let bao = &op.bao;
    let suffix = t.path("ha").replace('/', "-");
    let (kv_policy, db_policy) = (format!("{suffix}-kv"), format!("{suffix}-db"));
    read_policy(bao, &kv_policy, &t.ns);
    let creds = db::role(bao, &suffix, "20s", "10m");
    db::policy(bao, &db_policy, &creds);
    let role = format!("{suffix}-role");
    kubernetes_role(bao, &role, &t.ns, "ha", &format!("{kv_policy},{db_policy}"), &[]);
    t.create_service_account("ha").await;
    let kv_path = t.path(&format!("ha-{}", std::process::id()));
    bao.put(&kv_path, &[("password", "before")]);
    let auth = json!({"kubernetes": {"role": role, "serviceAccountName": "ha"}});
    let kv = json!({"auth": auth, "sources": [{"kv": {"mount": "secret", "path": kv_path}}], "refresh": {"interval": "10s"}});
    let leased = json!({"auth": auth, "sources": [{"name": "db", "dynamic": {"mount": db::MOUNT, "path": creds}}]});
    t.create_vs("ha-kv", kv).await.expect("create VaultSecret");
    t.create_vs("ha-db", leased).await.expect("create VaultSecret");
    t.wait_ready("ha-kv", "True", "Synced").await;
    let synced_db = t.wait_ready("ha-db", "True", "Synced").await;
    let first_lease = db::lease(&synced_db, "db");
    let kv_before = t.secrets().get("ha-kv").await.unwrap().metadata.resource_version;
    let db_before = t.secrets().get("ha-db").await.unwrap().metadata.resource_version;

    let pods = kubectl(
        op.env,
        &[
            "-n",
            operator_ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=vaultsync",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    let pods: Vec<String> = pods.split_whitespace().map(str::to_owned).collect();
    assert_eq!(pods.len(), 2, "two operator pods: {pods:?}");
    let leader = poll_for("a leader", Duration::from_secs(60), async || {
        holder(t, operator_ns).await
    })
    .await;
    assert!(pods.contains(&leader), "the leader {leader} is one of {pods:?}");

    // Deleted as a user would: the kubelet stops it with SIGTERM, it releases the Lease.
    let deleted_at = Instant::now();
    Api::<Pod>::namespaced(t.client.clone(), operator_ns)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    // The standby, or the pod the Deployment starts in the leader's place, whichever is first.
    let successor = poll_for("another replica to take over", Duration::from_secs(90), async || {
        holder(t, operator_ns).await.filter(|h| *h != leader)
    })
    .await;
    let role = if pods.contains(&successor) {
        "the standby"
    } else {
        "a replacement pod"
    };
    eprintln!(
        "{successor} ({role}) took over {:.1?} after {leader} was deleted",
        deleted_at.elapsed()
    );

    // The new leader re-reads the KV source (refresh every 10 s) and renews the lease: nothing to
    // write, nothing to issue.
    let reads = bao.requests_for(&format!("secret/data/{kv_path}"));
    poll_for(
        "the new leader to read the source",
        Duration::from_secs(60),
        async || (bao.requests_for(&format!("secret/data/{kv_path}")) > reads).then_some(()),
    )
    .await;
    let renewed = t
        .wait_vs_for(
            "ha-db",
            Duration::from_secs(60),
            "the new leader to renew the lease",
            |vs| db::lease(vs, "db").expiry.0 > first_lease.expiry.0,
        )
        .await;
    assert_eq!(
        db::lease(&renewed, "db").id,
        first_lease.id,
        "the new leader issued a new lease"
    );
    assert_eq!(db::issued(bao, &creds), 1, "credentials issued twice");
    assert_eq!(
        t.secrets().get("ha-kv").await.unwrap().metadata.resource_version,
        kv_before,
        "takeover rewrote the Secret"
    );
    assert_eq!(
        t.secrets().get("ha-db").await.unwrap().metadata.resource_version,
        db_before,
        "takeover rewrote the leased Secret"
    );

    // And it does the job: a change reaches the Secret.
    bao.put(&kv_path, &[("password", "after")]);
    t.wait_secret_for(
        "ha-kv",
        Duration::from_secs(60),
        "the new leader to sync a change",
        |s| value(s, "password").as_deref() == Some("after"),
    )
    .await;
}

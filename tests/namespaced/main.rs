//! `config/namespaced` as shipped (through the same kind of overlay as `tests/cluster`), with its two
//! replicas, on a real node: the operator runs as pods in its team's namespace, syncs a Secret a pod
//! there reads, neither sees nor touches VaultSecrets elsewhere, and hands over from a deleted
//! leader pod to another replica without rewriting a Secret or re-issuing a lease.
//!
//! Its own binary: a cluster-wide install beside it would sync the team's VaultSecrets too.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use tokio::sync::Mutex;

use common::auth::{kubernetes_role, read_policy};
use common::cluster::{POD_TIMEOUT, apply, installed};
use common::pods::tools_deployment;
use common::{Operator, TestNs, db, has_value, value};

/// The namespace the operator is installed in, and syncs.
const TEAM: &str = "team-a";
/// The replicas of `config/manager`.
const REPLICAS: u32 = 2;
/// The leader-election Lease in the operator's namespace.
const LEASE: &str = "vaultsync-leader";

/// The tests of this binary run one at a time: one deletes the leader.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn operator() -> &'static Operator {
    installed("namespaced", TEAM, REPLICAS)
}

#[tokio::test]
async fn the_namespaced_install_serves_its_own_namespace_and_no_other() {
    let _serial = SERIAL.lock().await;
    let op = operator();
    let team = TestNs::fixed_in(op, TEAM).await;
    let other = TestNs::new_in(op, "other").await;
    for t in [&team, &other] {
        read_policy(&op.bao, &t.ns, &t.ns);
        kubernetes_role(&op.bao, &t.ns, &t.ns, "app", &t.ns, &[]);
        t.create_service_account("app").await;
        op.bao.put(&t.path("app"), &[("password", "in-vault")]);
    }
    let spec = |t: &TestNs| {
        json!({
            "auth": {"kubernetes": {"role": t.ns, "serviceAccountName": "app"}},
            "sources": [{"kv": {"mount": "secret", "path": t.path("app")}}],
        })
    };
    // The other namespace's VaultSecret first: by the time the team's is Ready, the operator has
    // had every chance to see it.
    other
        .create_vs("app-secrets", spec(&other))
        .await
        .expect("create VaultSecret");
    team.create_vs("app-secrets", spec(&team))
        .await
        .expect("create VaultSecret");
    team.wait_ready("app-secrets", "True", "Synced").await;
    team.wait_secret("app-secrets", "the synced Secret", has_value("password", "in-vault"))
        .await;

    let consume = "          envFrom: [{secretRef: {name: app-secrets}}]";
    let script = r#"echo "env=$password"; sleep 100000"#;
    apply(
        op.env,
        &tools_deployment(&team.ns, "app", script, consume, ""),
        "create Deployment app",
    );
    let pod = team.wait_one_pod("app", &[]).await;
    team.wait_printed(&pod, "env=in-vault", POD_TIMEOUT).await;

    let untouched = other.vaultsecrets().get("app-secrets").await.unwrap();
    assert!(
        untouched.status.is_none(),
        "a VaultSecret outside {TEAM} got a status: {:?}",
        untouched.status
    );
    assert!(
        other.secrets().get_opt("app-secrets").await.unwrap().is_none(),
        "a Secret was written outside {TEAM}"
    );
    let operator_pods = team.kubectl(&["get", "pods", "-l", "app.kubernetes.io/name=vaultsync", "-o", "name"]);
    for pod in operator_pods.lines() {
        let pod = pod.trim_start_matches("pod/");
        let log = op.env.container_log(TEAM, pod, "vaultsync");
        assert!(!log.is_empty(), "no log for the operator pod {pod}");
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the operator tried something its Role does not grant:\n{log}"
        );
    }
}

/// The holder of the leader-election Lease, if any.
async fn holder(t: &TestNs) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), TEAM);
    leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity
}

/// Polls `check` every 500 ms for at most `limit`.
async fn eventually<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn deleting_the_leader_pod_hands_over_without_a_secret_write_or_a_new_lease() {
    let _serial = SERIAL.lock().await;
    let op = operator();
    let t = TestNs::fixed_in(op, TEAM).await;
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

    let pods = t.kubectl(&[
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=vaultsync",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let pods: Vec<String> = pods.split_whitespace().map(str::to_owned).collect();
    assert_eq!(pods.len(), REPLICAS as usize, "two operator pods: {pods:?}");
    let leader = eventually("a leader", Duration::from_secs(60), async || holder(&t).await).await;
    assert!(pods.contains(&leader), "the leader {leader} is one of {pods:?}");

    // Deleted as a user would: the kubelet stops it with SIGTERM, it releases the Lease.
    let deleted_at = Instant::now();
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(t.client.clone(), TEAM)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    // The standby, or the pod the Deployment starts in the leader's place, whichever is first.
    let successor = eventually("another replica to take over", Duration::from_secs(90), async || {
        holder(&t).await.filter(|h| *h != leader)
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
    eventually(
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

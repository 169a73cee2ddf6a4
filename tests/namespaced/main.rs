//! `config/namespaced` as shipped (through the same kind of overlay as `tests/cluster`), with its two
//! replicas, on a real node: the operator runs as pods in its team's namespace, syncs a Secret a pod
//! there reads, neither sees nor touches VaultSecrets elsewhere, and hands over from a deleted
//! leader pod to another replica without rewriting a Secret or re-issuing a lease.
//!
//! Its own binary: a cluster-wide install beside it would sync the team's VaultSecrets too.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use serde_json::json;
use tokio::sync::Mutex;

use common::auth::{kubernetes_role, read_policy};
use common::cluster::{POD_TIMEOUT, installed};
use common::handover;
use common::pods::tools_deployment;
use common::{Operator, TestNs, has_value};

/// The namespace the operator is installed in, and syncs.
const TEAM: &str = "team-a";
/// The replicas of `config/manager`.
const REPLICAS: u32 = 2;

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
    common::kubectl_apply(
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

#[tokio::test]
async fn deleting_the_leader_pod_hands_over_without_a_secret_write_or_a_new_lease() {
    let _serial = SERIAL.lock().await;
    let op = operator();
    let t = TestNs::fixed_in(op, TEAM).await;
    handover::deleting_the_leader_pod_hands_over(op, TEAM, &t).await;
}

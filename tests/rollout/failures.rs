//! A restart that cannot happen never fails the sync: the Secret is written, Ready stays True,
//! `RolloutRestart` says why, a Warning is emitted, and the restart is retried.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vaultsync::rollout::key_for;

use crate::common::has_value;
use crate::workloads::{
    create, env_from, events, get, hash, ns, replica_sets, resource, spec, wait_new_hash, wait_rolled,
    wait_rollout_condition,
};

const CANARY: &str = "Rollout-Canary-41c7e";

#[tokio::test]
async fn a_missing_target_still_updates_the_secret_and_reports_rollout_restart_false() {
    let t = ns("missing-target").await;
    let path = t.path("cfg");
    t.op.bao.put(&path, &[("token", "old")]);
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "late"}]});
    t.create_vs("cfg", spec(&path, rollout))
        .await
        .expect("create VaultSecret");
    let first = hash(&t.wait_ready("cfg", "True", "Synced").await);

    t.op.bao.put(&path, &[("token", CANARY)]);
    t.wait_secret("cfg", "the new value", has_value("token", CANARY)).await;
    let vs = wait_rollout_condition(&t, "cfg", "False", "TargetNotFound").await;
    let status = vs.status.clone().expect("status");
    assert_eq!(
        status.ready().map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "Synced"))
    );
    let message = status.rollout_restart().map(|c| c.message.clone()).expect("message");
    assert!(message.contains("Deployment late"), "{message}");
    assert_ne!(hash(&vs), first, "the Secret's new content is recorded");
    assert_eq!(
        status.pending_rollout_hash.as_deref(),
        Some(hash(&vs).as_str()),
        "still pending"
    );
    let warnings = events(&t, "TargetNotFound").await;
    assert!(
        warnings
            .iter()
            .any(|(kind, name, _)| kind == "VaultSecret" && name == "cfg"),
        "{warnings:?}"
    );
    let status_json = serde_json::to_string(&status).expect("json");
    assert!(
        !status_json.contains(CANARY) && !format!("{warnings:?}").contains(CANARY),
        "a value leaked"
    );

    // The target appears: the retry (with backoff) restarts it and the condition clears.
    create::<Deployment>(&t, "late", env_from(&["cfg"]), json!({})).await;
    let current = hash(&vs);
    wait_rolled(&t, &resource::<Deployment>(), "late", &key_for("cfg"), &current).await;
    let vs = wait_rollout_condition(&t, "cfg", "True", "Restarted").await;
    assert_eq!(vs.status.and_then(|s| s.pending_rollout_hash), None);
}

#[tokio::test]
async fn an_argo_rollout_target_without_argo_rollouts_installed_is_reported() {
    let t = ns("argo").await;
    let path = t.path("cfg");
    t.op.bao.put(&path, &[("k", "1")]);
    let rollout = json!({"targets": [{"kind": "Rollout", "name": "shop"}], "debounce": "0s"});
    t.create_vs("cfg", spec(&path, rollout))
        .await
        .expect("create VaultSecret");
    let first = hash(&t.wait_ready("cfg", "True", "Synced").await);
    t.op.bao.put(&path, &[("k", "2")]);
    wait_new_hash(&t, "cfg", &first).await;
    let vs = wait_rollout_condition(&t, "cfg", "False", "RolloutKindNotServed").await;
    let message = vs
        .status
        .and_then(|s| s.rollout_restart().map(|c| c.message.clone()))
        .expect("message");
    assert!(message.contains("Argo Rollouts"), "{message}");
    t.wait_ready("cfg", "True", "Synced").await;
}

#[tokio::test]
async fn a_paused_deployment_gets_the_new_template_and_restarts_when_resumed() {
    let t = ns("paused").await;
    let path = t.path("cfg");
    t.op.bao.put(&path, &[("k", "1")]);
    create::<Deployment>(&t, "web", env_from(&["cfg"]), json!({})).await;
    let deployments = t.client.clone();
    let api: kube::Api<Deployment> = kube::Api::namespaced(deployments, &t.ns);
    let pause = |paused: bool| json!({"spec": {"paused": paused}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&pause(true)))
        .await
        .expect("pause");
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "web"}], "debounce": "0s"});
    t.create_vs("cfg", spec(&path, rollout))
        .await
        .expect("create VaultSecret");
    let first = hash(&t.wait_ready("cfg", "True", "Synced").await);

    t.op.bao.put(&path, &[("k", "2")]);
    let second = wait_new_hash(&t, "cfg", &first).await;
    wait_rollout_condition(&t, "cfg", "False", "WorkloadPaused").await;
    let web = get(&t, &resource::<Deployment>(), "web").await;
    assert_eq!(
        crate::workloads::template_annotation(&web, &key_for("cfg")).as_deref(),
        Some(second.as_str()),
        "the template is updated while paused"
    );
    assert_eq!(replica_sets(&t, "web").await, 1, "no rollout while paused");

    api.patch("web", &PatchParams::default(), &Patch::Merge(&pause(false)))
        .await
        .expect("resume");
    wait_rollout_condition(&t, "cfg", "True", "Restarted").await;
    wait_rolled(&t, &resource::<Deployment>(), "web", &key_for("cfg"), &second).await;
    assert_eq!(replica_sets(&t, "web").await, 2, "one rollout once resumed");
}

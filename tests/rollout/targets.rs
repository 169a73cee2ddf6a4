//! Targets listed in `spec.rollout.targets` restart once per change of content, and only then.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use vaultsync::rollout::key_for;

use crate::common::has_value;
use crate::workloads::{
    create, events, get, hash, ns, replica_sets, resource, spec, template_annotation, vaultsync_annotations,
    wait_new_hash, wait_reads, wait_rolled, wait_rollout_condition,
};

#[tokio::test]
async fn a_rotated_value_rolls_the_target_deployment_once_and_unchanged_refreshes_roll_nothing() {
    let t = ns("target").await;
    let path = t.path("web");
    t.op.bao.put(&path, &[("password", "first")]);
    create::<Deployment>(&t, "web", crate::workloads::env_from(&["web-env"]), json!({})).await;
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "web"}]});
    let mut vs = spec(&path, rollout);
    vs["destination"] = json!({"name": "web-env"});
    t.create_vs("web", vs).await.expect("create VaultSecret");
    t.wait_secret("web-env", "the first sync", has_value("password", "first"))
        .await;
    let first = hash(&t.wait_ready("web", "True", "Synced").await);

    // The first sync restarts nothing: Pods starting after it read the Secret anyway.
    let deployments = resource::<Deployment>();
    let before = get(&t, &deployments, "web").await;
    assert_eq!(replica_sets(&t, "web").await, 1);
    assert!(
        vaultsync_annotations(&before).is_empty(),
        "first sync annotated the template"
    );

    t.op.bao.put(&path, &[("password", "second")]);
    let second = wait_new_hash(&t, "web", &first).await;
    let key = key_for("web-env");
    let rolled = wait_rolled(&t, &deployments, "web", &key, &second).await;
    assert_eq!(rolled.metadata.generation, Some(2), "one change of the pod template");
    assert_eq!(replica_sets(&t, "web").await, 2, "exactly one new ReplicaSet");
    assert_eq!(template_annotation(&rolled, &key).as_deref(), Some(second.as_str()));
    assert!(
        !second.contains("second"),
        "the annotation holds a keyed hash, not the value"
    );
    let vs = wait_rollout_condition(&t, "web", "True", "Restarted").await;
    let status = vs.status.expect("status");
    assert_eq!(status.pending_rollout_hash, None, "nothing left pending");
    assert_eq!(status.ready().map(|c| c.status.as_str()), Some("True"));

    let (_, scrape) = t.op.get("/metrics").await;
    let series = format!(
        "vaultsync_rollout_restarts_total{{kind=\"Deployment\",namespace=\"{}\",result=\"restarted\"}} 1",
        t.ns
    );
    assert!(scrape.lines().any(|l| l == series), "{series} missing from /metrics");

    let triggered = events(&t, "RolloutRestartTriggered").await;
    for kind in ["VaultSecret", "Deployment"] {
        assert!(
            triggered.iter().any(|(k, name, _)| k == kind && name == "web"),
            "RolloutRestartTriggered on the {kind}: {triggered:?}"
        );
    }

    // Two refreshes read the same content: no patch, no ReplicaSet.
    wait_reads(&t, &path, 2).await;
    let after = get(&t, &deployments, "web").await;
    assert_eq!(
        after.metadata.generation,
        Some(2),
        "an unchanged refresh changed the template"
    );
    assert_eq!(replica_sets(&t, "web").await, 2);
}

#[tokio::test]
async fn a_metadata_only_change_restarts_nothing() {
    let t = ns("metadata").await;
    let path = t.path("api");
    t.op.bao.put(&path, &[("token", "t1")]);
    create::<Deployment>(&t, "api", crate::workloads::env_from(&["api"]), json!({})).await;
    let rollout = json!({"targets": [{"kind": "Deployment", "name": "api"}], "debounce": "0s"});
    t.create_vs("api", spec(&path, rollout))
        .await
        .expect("create VaultSecret");
    t.wait_ready("api", "True", "Synced").await;

    // A new label on the destination rewrites the Secret but not its data.
    let labels = json!({"spec": {"destination": {"labels": {"team": "shop"}}}});
    t.vaultsecrets()
        .patch(
            "api",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&labels),
        )
        .await
        .expect("patch VaultSecret");
    t.wait_secret(
        "api",
        "the label on the Secret",
        |s: Option<&k8s_openapi::api::core::v1::Secret>| {
            s.is_some_and(|s| s.metadata.labels.as_ref().and_then(|l| l.get("team")).is_some())
        },
    )
    .await;
    wait_reads(&t, &path, 1).await; // a refresh after the change: still nothing to restart
    let api = get(&t, &resource::<Deployment>(), "api").await;
    assert_eq!(api.metadata.generation, Some(1));
    assert_eq!(replica_sets(&t, "api").await, 1);
}

//! `spec.rollout.auto` restarts every workload of the namespace whose pod template uses the
//! Secret, whichever way it does, and leaves the others (and those that opt out) alone.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use serde_json::json;
use vaultsync::rollout::key_for;

use crate::common::has_value;
use crate::workloads::{
    container, create, env_from, get, hash, ns, replica_sets, resource, revisions, spec, vaultsync_annotations,
    wait_new_hash, wait_rolled, wait_rollout_condition,
};

#[tokio::test]
async fn auto_rolls_env_volume_and_projected_users_once_and_leaves_the_rest_alone() {
    let t = ns("auto").await;
    let path = t.path("db");
    t.op.bao.put(&path, &[("password", "one")]);

    let env = json!({"containers": [container(json!({"env": [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]}))]});
    let volume = json!({
        "containers": [container(json!({"volumeMounts": [{"name": "db", "mountPath": "/db"}]}))],
        "volumes": [{"name": "db", "secret": {"secretName": "db"}}],
    });
    let projected = json!({
        "initContainers": [container(json!({"name": "init", "volumeMounts": [{"name": "all", "mountPath": "/all"}]}))],
        "containers": [container(json!({}))],
        "volumes": [{"name": "all", "projected": {"sources": [{"secret": {"name": "db"}}]}}],
    });
    create::<Deployment>(&t, "api", env, json!({})).await;
    create::<StatefulSet>(&t, "store", volume, json!({})).await;
    create::<DaemonSet>(&t, "agent", projected, json!({})).await;
    create::<Deployment>(&t, "unrelated", env_from(&["other"]), json!({})).await;
    let opted_out = json!({"vaultsync.dev/rollout": "false"});
    create::<Deployment>(&t, "pinned", env_from(&["db"]), opted_out).await;
    let (sts_revisions, ds_revisions) = (
        revisions(&t, "StatefulSet", "store").await,
        revisions(&t, "DaemonSet", "agent").await,
    );
    assert_eq!(
        (sts_revisions, ds_revisions),
        (1, 1),
        "one revision each before any change"
    );

    t.create_vs("db", spec(&path, json!({"auto": true})))
        .await
        .expect("create VaultSecret");
    t.wait_secret("db", "the first sync", has_value("password", "one"))
        .await;
    let first = hash(&t.wait_ready("db", "True", "Synced").await);

    t.op.bao.put(&path, &[("password", "two")]);
    let second = wait_new_hash(&t, "db", &first).await;
    let key = key_for("db");
    let api = wait_rolled(&t, &resource::<Deployment>(), "api", &key, &second).await;
    let store = wait_rolled(&t, &resource::<StatefulSet>(), "store", &key, &second).await;
    let agent = wait_rolled(&t, &resource::<DaemonSet>(), "agent", &key, &second).await;
    for (name, rolled) in [("api", &api), ("store", &store), ("agent", &agent)] {
        assert_eq!(
            rolled.metadata.generation,
            Some(2),
            "{name}: one change of the pod template"
        );
    }
    assert_eq!(
        replica_sets(&t, "api").await,
        2,
        "one new ReplicaSet for the Deployment"
    );
    assert_eq!(
        revisions(&t, "StatefulSet", "store").await,
        2,
        "one new StatefulSet revision"
    );
    assert_eq!(
        revisions(&t, "DaemonSet", "agent").await,
        2,
        "one new DaemonSet revision"
    );

    let vs = wait_rollout_condition(&t, "db", "True", "Restarted").await;
    let message = vs
        .status
        .and_then(|s| s.rollout_restart().map(|c| c.message.clone()))
        .expect("message");
    assert!(
        ["Deployment api", "StatefulSet store", "DaemonSet agent"]
            .iter()
            .all(|w| message.contains(w)),
        "{message}"
    );
    for name in ["unrelated", "pinned"] {
        let untouched = get(&t, &resource::<Deployment>(), name).await;
        assert_eq!(untouched.metadata.generation, Some(1), "{name} was changed");
        assert!(vaultsync_annotations(&untouched).is_empty(), "{name} was annotated");
        assert_eq!(replica_sets(&t, name).await, 1, "{name} got a ReplicaSet");
    }
    assert!(
        !message.contains("unrelated") && !message.contains("pinned"),
        "{message}"
    );
}

//! Restarting the operator restarts no workload, and finishes a restart it was about to make.

use k8s_openapi::api::apps::v1::Deployment;
use vaultsync::api::VaultSecret;
use vaultsync::rollout::key_for;

use crate::common::restart_operator;
use crate::workloads::{
    all_replica_sets, exclusive_ns, get, replica_sets, resource, synced_target, wait_new_hash, wait_reads, wait_rolled,
    wait_rollout_condition,
};

#[tokio::test]
async fn restarting_the_operator_rolls_nothing_anywhere() {
    let (t, _exclusive) = exclusive_ns("restart").await;
    // One workload already restarted once, one never: neither may restart again.
    let first = synced_target(&t, "rotated", "0s").await;
    synced_target(&t, "fresh", "0s").await;
    t.op.bao.put(&t.path("rotated"), &[("password", "v2")]);
    let second = wait_new_hash(&t, "rotated", &first).await;
    wait_rolled(&t, &resource::<Deployment>(), "rotated", &key_for("rotated"), &second).await;
    wait_rollout_condition(&t, "rotated", "True", "Restarted").await;
    let before = all_replica_sets(&t).await;

    restart_operator().await;
    // The new operator knows nothing and syncs every VaultSecret at once.
    for name in ["rotated", "fresh"] {
        wait_reads(&t, &t.path(name), 1).await;
    }
    // A canary rotated after the restart: once it has restarted, anything the restart itself
    // had queued (with the same debounce, earlier) would have been patched too.
    let canary = synced_target(&t, "canary", "0s").await;
    t.op.bao.put(&t.path("canary"), &[("password", "v2")]);
    let rotated = wait_new_hash(&t, "canary", &canary).await;
    wait_rolled(&t, &resource::<Deployment>(), "canary", &key_for("canary"), &rotated).await;

    let mut after = all_replica_sets(&t).await;
    after.retain(|(ns, name)| !(ns == &t.ns && name.starts_with("canary-")));
    assert_eq!(after, before, "a ReplicaSet appeared after the operator restarted");
    for (name, generation) in [("rotated", 2), ("fresh", 1)] {
        let d = get(&t, &resource::<Deployment>(), name).await;
        assert_eq!(d.metadata.generation, Some(generation), "{name}");
    }
    assert_eq!(replica_sets(&t, "canary").await, 2);
}

#[tokio::test]
async fn a_restart_queued_when_the_operator_stops_is_finished_once_by_the_next_one() {
    let (t, _exclusive) = exclusive_ns("crash").await;
    // A long window: the operator is restarted while the restart waits in memory.
    let first = synced_target(&t, "web", "6s").await;
    t.op.bao.put(&t.path("web"), &[("password", "v2")]);
    let second = wait_new_hash(&t, "web", &first).await;
    t.wait_vs("web", "the restart recorded as pending", |vs: Option<&VaultSecret>| {
        vs.and_then(|v| v.status.as_ref()?.pending_rollout_hash.clone())
            .is_some()
    })
    .await;
    assert_eq!(
        replica_sets(&t, "web").await,
        1,
        "restarted before the debounce window ended"
    );

    restart_operator().await;
    let rolled = wait_rolled(&t, &resource::<Deployment>(), "web", &key_for("web"), &second).await;
    assert_eq!(rolled.metadata.generation, Some(2), "one change of the pod template");
    assert_eq!(replica_sets(&t, "web").await, 2, "exactly one new ReplicaSet");
    let vs = wait_rollout_condition(&t, "web", "True", "Restarted").await;
    assert_eq!(vs.status.and_then(|s| s.pending_rollout_hash), None);
}
